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


def test_the_master_says_where_it_listens_with_a_socket_per_worker(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from gunicorn.config import Config

    cfg = Config()
    cfg.set("bind", ["127.0.0.1:8080"])
    cfg.set("errorlog", "-")
    logger = gunicorn_conf.AddressLogger(cfg)
    logger.info("Listening at: %s (%s)", "", 4242)  # what the arbiter logs under reuse_port
    logger.info("Listening at: %s (%s)", "http://0.0.0.0:9", 4243)  # a master's own socket
    err = capsys.readouterr().err
    assert "Listening at: http://127.0.0.1:8080 (a socket per worker) (4242)" in err
    assert "Listening at: http://0.0.0.0:9 (4243)" in err
