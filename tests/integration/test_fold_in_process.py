"""`movierec fold-in` as a real process beside a real gunicorn, on SQLite and on Redis: the
workers answer with the process's lists and fold nobody in themselves; once it stops (SIGTERM,
exit 0, with its report), they fold in themselves again. Also the Redis shared lists' contract
and Redis down as `OnlineStoreUnavailable`."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from movierec.core.errors import OnlineStoreUnavailable
from movierec.core.settings import Settings
from movierec.ops.service import free_port
from movierec.serve.live.shared_lists import RedisSharedLists, open_shared_lists
from tests.integration.redisserver import redis_server
from tests.integration.test_live import _get, _metric, _seen_by_the_service, _watch, home
from tests.servicekit import gunicorn, stop_process, wait_until

__all__ = ["home"]  # the fixture, used by the tests below


@contextlib.contextmanager
def fold_in_process(settings: Settings, **env_extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """`movierec fold-in`, once its first heartbeat is written."""
    env = dict(os.environ) | settings.env() | env_extra
    log_path = settings.home / "fold-in.log"
    heartbeat = settings.home / "fold-in.heartbeat"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "movierec.cli", "fold-in", "--heartbeat", str(heartbeat)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    lists = open_shared_lists(settings)
    assert lists is not None
    try:

        def beating() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"movierec fold-in exited: {log_path.read_text()[-2000:]}")
            return lists.folder_seen_ms() is not None

        wait_until(beating, 60.0)
        wait_until(heartbeat.exists, 5.0)  # a container's health check reads it
        yield proc
    finally:
        stop_process(proc)
        lists.close()


def _takes_the_process_lists_then_folds_in_itself(settings: Settings, **env: str) -> None:
    with fold_in_process(settings, **env) as folder, gunicorn(settings, **env) as url:
        before, version = _get(url, 3)
        _watch(settings, 3, before[:2])
        _seen_by_the_service(lambda: not set(before[:2]) & set(_get(url, 3)[0]))
        # each worker took the process's list for user 3 (it waited for it): none folded in
        wait_until(lambda: _metric(url, "movierec_fold_in_warm_total", event="shared") >= 2)
        assert _metric(url, "movierec_fold_in_warm_total", event="computed") == 0
        lists = open_shared_lists(settings)
        assert lists is not None
        made = lists.get(version, 3)
        assert made is not None and _get(url, 3)[0] == made[1].split(",")[:20]
        lists.close()
        folder.send_signal(signal.SIGTERM)
        assert folder.wait(timeout=30) == 0
        report = (settings.home / "fold-in.log").read_text()
        assert re.search(r"fold-in stopped: [1-9][0-9]* lists folded in", report), report
        # the process is gone: a worker waits once for a list that does not come, then folds
        # user 3 in itself
        _watch(settings, 3, [before[2]])
        _seen_by_the_service(lambda: before[2] not in _get(url, 3)[0])
        wait_until(lambda: _metric(url, "movierec_fold_in_warm_total", event="computed") >= 1, 10.0)


@pytest.mark.slow
def test_the_workers_take_the_fold_in_process_lists_on_sqlite(home: Settings) -> None:
    _takes_the_process_lists_then_folds_in_itself(home)


@pytest.mark.slow
def test_the_workers_take_the_fold_in_process_lists_on_redis(home: Settings) -> None:
    with redis_server() as server:
        redis_home = home.replace(online_store="redis", online_store_redis_url=server.url)
        env = {"MOVIEREC_ONLINE_STORE": "redis", "MOVIEREC_ONLINE_STORE_REDIS_URL": server.url}
        _takes_the_process_lists_then_folds_in_itself(redis_home, **env)


@pytest.mark.slow
def test_the_process_starts_where_the_service_s_metrics_folder_is_set(home: Settings) -> None:
    """The image sets PROMETHEUS_MULTIPROC_DIR for gunicorn, whose configuration makes the
    folder; `movierec fold-in` keeps its counters to itself and starts without it."""
    missing = str(home.home / "no-such-metrics-folder")
    with fold_in_process(home, PROMETHEUS_MULTIPROC_DIR=missing) as folder:
        assert folder.poll() is None


def test_the_redis_shared_lists_and_redis_down() -> None:
    with redis_server() as server:
        lists = RedisSharedLists(server.url, timeout_seconds=0.05)
        assert lists.get("v1", 5) is None and lists.folder_seen_ms() is None
        lists.put("v1", 5, "aa", "m1,m2")
        lists.put("v1", 5, "bb", "m3")
        assert lists.get("v1", 5) == ("bb", "m3") and lists.get("v2", 5) is None
        lists.beat()
        assert lists.folder_seen_ms() is not None
        server.stop()
        with pytest.raises(OnlineStoreUnavailable) as err:
            lists.get("v1", 5)
        assert err.value.reason == "unreachable"
    nothing = RedisSharedLists(f"redis://127.0.0.1:{free_port()}/0", timeout_seconds=0.05)
    with pytest.raises(OnlineStoreUnavailable):
        nothing.put("v1", 5, "aa", "m1")
