"""The Redis online store against Debian's redis-server: the store contract (the same rows as
SQLite whatever the order or repetition of the batches), the retention as a key expiry, and
Redis down as `OnlineStoreUnavailable("unreachable")` within the time-out."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from movierec.core.errors import OnlineStoreUnavailable
from movierec.data.online_redis import CHANGES_KEY, RedisHistoryStore, user_key
from movierec.data.online_sqlite import SqliteHistoryStore
from movierec.ops.service import free_port
from tests.historykit import check_contract, event_lines, stored, write
from tests.integration.redisserver import redis_server


def test_the_store_contract_and_the_same_rows_as_sqlite(tmp_path: Path) -> None:
    with redis_server() as server:
        databases = {"first": 1, "second": 2}
        check_contract(lambda name: RedisHistoryStore(f"{server.url[:-2]}/{databases[name]}"))
        lines = event_lines(5, 800)
        in_redis = RedisHistoryStore(server.url)
        in_sqlite = SqliteHistoryStore(tmp_path / "store.sqlite")
        write(in_redis, lines)
        write(in_sqlite, lines)
        assert stored(in_redis) == stored(in_sqlite) != {}
        ttl = redis.Redis.from_url(server.url).ttl(user_key(next(iter(stored(in_redis)))))
        assert 29 * 86_400 < ttl <= 30 * 86_400


def test_redis_down_is_unreachable_at_once_for_reads_and_writes() -> None:
    with redis_server() as server:
        store = RedisHistoryStore(server.url, timeout_ms=50)
        write(store, event_lines(1, 100))
        assert stored(store)
        server.stop()
        for attempt in range(3):
            start = time.perf_counter()
            with pytest.raises(OnlineStoreUnavailable) as err:
                store.history(1, 0)
            assert err.value.reason == "unreachable", attempt
            assert time.perf_counter() - start < 0.5
        with pytest.raises(OnlineStoreUnavailable) as err:
            write(store, event_lines(2, 100))
        assert err.value.reason == "unreachable"


def test_nothing_listening_is_unreachable() -> None:
    store = RedisHistoryStore(f"redis://127.0.0.1:{free_port()}/0", timeout_ms=50)
    with pytest.raises(OnlineStoreUnavailable) as err:
        store.history(1, 0)
    assert err.value.reason == "unreachable" and "127.0.0.1" in str(err.value)


def test_the_change_feed_as_sqlites(tmp_path: Path) -> None:
    """The same users and latest events as the SQLite store's feed; a trimmed stream reads
    every user again."""
    with redis_server() as server:
        in_redis = RedisHistoryStore(server.url)
        in_sqlite = SqliteHistoryStore(tmp_path / "store.sqlite")
        a, b = event_lines(1, 300), event_lines(2, 300, users=50)
        for store in (in_redis, in_sqlite):
            write(store, a)
        first, first_sqlite = in_redis.changes(None), in_sqlite.changes(None)
        assert first.full and first.latest == first_sqlite.latest != {}  # type: ignore[union-attr]
        for store in (in_redis, in_sqlite):
            write(store, b)
        later = in_redis.changes(first.cursor)
        assert not later.full
        assert later.latest == in_sqlite.changes(first_sqlite.cursor).latest  # type: ignore[union-attr]
        assert in_redis.changes(later.cursor).latest == {}
        redis.Redis.from_url(server.url).xtrim(CHANGES_KEY, maxlen=0)  # as MINID trims
        again = in_redis.changes(first.cursor)
        assert again.full and again.latest == in_sqlite.changes(None).latest  # type: ignore[union-attr]
