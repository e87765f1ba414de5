"""The gunicorn configuration: the master imports the workers' libraries and freezes them out of
the garbage collector before it forks, so that the workers share those pages."""

from __future__ import annotations

import gc
import sys

import pytest

from movierec.serve import gunicorn_conf


def test_the_master_imports_and_freezes_the_shared_libraries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    frozen = gc.get_freeze_count()
    try:
        gunicorn_conf.on_starting(server=None)
        assert all(name in sys.modules for name in gunicorn_conf.SHARED_LIBRARIES)
        assert "xgboost" in gunicorn_conf.SHARED_LIBRARIES  # the heaviest the workers load
        assert gc.get_freeze_count() > frozen
    finally:
        gc.unfreeze()
