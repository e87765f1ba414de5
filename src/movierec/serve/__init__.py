"""The inference service: `gunicorn 'movierec.serve:create_app()'`."""

from movierec.serve.app import create_app

__all__ = ["create_app"]
