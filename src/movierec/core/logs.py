"""Logging set-up, called once by each entry point (never at import time)."""

from __future__ import annotations

import logging
import os

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str | int | None = None) -> None:
    """Log to stderr at MOVIEREC_LOG_LEVEL (default INFO)."""
    chosen = level if level is not None else os.environ.get("MOVIEREC_LOG_LEVEL", "INFO")
    logging.basicConfig(level=chosen, format=_FORMAT)
