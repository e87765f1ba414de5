"""Fold-in lists shared by every worker, replica and `movierec fold-in`: `SharedLists`.

Each worker's warmer (`serve.live.warmer`) folds in every user whose events arrive, so with two
workers each user was folded in twice, about 4 ms of CPU each time on the cores that answer
requests. Whoever folds a user in first now writes the list here, keyed by (model version,
user) and tagged with the fingerprint of the history it was made from (`fingerprint`: the set
of movies since the model's cutoff, which is all a fold-in depends on). A warmer reads the
user's history anyway; when the shared list's fingerprint matches, it keeps that list, which is
the one it would have made, and skips its own fold-in.

`movierec fold-in` (`serve.live.fold_in_process`) is a process beside the service that only folds
in, and writes every list here first. While it runs, it renews a heartbeat every
`HEARTBEAT_SECONDS`. Until the heartbeat is older than `HEARTBEAT_STALE_SECONDS`, a worker whose
user has no matching list waits for it for `fold_in_defer_ms`, then folds in itself. Meanwhile the
user's requests get their previous list without what they watched.

Where: beside the online store.
- SQLite: `data/fold_in_lists.sqlite`, its own file in WAL mode, so that writing a list never
  waits on the DataPipeline's write lock.
- Redis: one hash per model version, `movierec:lists:<version>` (field: the user; value:
  `fingerprint|list`), which expires `LIST_TTL_SECONDS` after its last write.

A failing store only costs CPU: the worker folds in itself. Every method raises
`OnlineStoreUnavailable`, and the warmer counts it.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from movierec.core.errors import OnlineStoreUnavailable
from movierec.core.settings import Settings
from movierec.data.online_redis import redis_unavailable
from movierec.data.online_sqlite import sqlite_unavailable

HEARTBEAT_SECONDS = 1.0
HEARTBEAT_STALE_SECONDS = 5.0
LIST_TTL_SECONDS = 7 * 86_400
WRITE_TIMEOUT_SECONDS = 1.0  # the warmer's thread writes, never a request's

SCHEMA = """
CREATE TABLE IF NOT EXISTS lists (
    version TEXT NOT NULL,
    user_id INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    items TEXT NOT NULL,
    written_ms INTEGER NOT NULL,
    PRIMARY KEY (version, user_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS heartbeat (name TEXT PRIMARY KEY, seen_ms INTEGER NOT NULL);
"""
GET = "SELECT fingerprint, items FROM lists WHERE version = ? AND user_id = ?"
PUT = "INSERT OR REPLACE INTO lists VALUES (?, ?, ?, ?, ?)"
BEAT = "INSERT OR REPLACE INTO heartbeat VALUES ('fold-in', ?)"
LAST_BEAT = "SELECT seen_ms FROM heartbeat WHERE name = 'fold-in'"
REDIS_PREFIX = "movierec:lists:"
REDIS_BEAT = "movierec:lists-heartbeat"


def fingerprint(movies: Iterable[str], length: int) -> str:
    """The history a list of `length` movies was folded in from, as its set of movies (order
    and repeats aside)."""
    text = "\n".join([str(length), *sorted(set(movies))])
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


class SharedLists(Protocol):
    def get(self, version: str, user_id: int) -> tuple[str, str] | None:
        """(fingerprint, comma-joined list) of the user's shared list for the model."""
        ...

    def put(self, version: str, user_id: int, fingerprint: str, items: str) -> None: ...

    def beat(self) -> None:
        """`movierec fold-in` is running (renewed every `HEARTBEAT_SECONDS`)."""
        ...

    def folder_seen_ms(self) -> int | None:
        """When the last heartbeat was written (epoch ms), None when none was."""
        ...

    def prune(self, keep: set[str]) -> int:
        """Forget the lists of every model version but `keep`'s; how many went (SQLite)."""
        ...

    def close(self) -> None: ...


def open_shared_lists(settings: Settings) -> SharedLists | None:
    """The shared lists beside the settings' online store (None without one)."""
    kind = settings.data.online_store
    if kind == "sqlite":
        return SqliteSharedLists(settings.data_path / "fold_in_lists.sqlite")
    if kind == "redis":
        timeout = settings.serving.online_store_timeout_ms / 1000.0
        return RedisSharedLists(settings.data.online_store_redis_url, timeout)
    return None


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class SqliteSharedLists:
    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=WRITE_TIMEOUT_SECONDS, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # a lost list is folded in again
            conn.executescript(SCHEMA)
        except OSError as exc:
            raise OnlineStoreUnavailable("error", f"{self.path}: {exc}") from None
        except sqlite3.Error as exc:
            raise sqlite_unavailable(self.path, exc) from None
        self._local.conn = conn
        return conn

    def _run(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            self.close()
            raise sqlite_unavailable(self.path, exc) from None

    def get(self, version: str, user_id: int) -> tuple[str, str] | None:
        rows = self._run(GET, (version, user_id))
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    def put(self, version: str, user_id: int, fingerprint: str, items: str) -> None:
        self._run(PUT, (version, user_id, fingerprint, items, now_ms()))

    def beat(self) -> None:
        self._run(BEAT, (now_ms(),))

    def folder_seen_ms(self) -> int | None:
        rows = self._run(LAST_BEAT)
        return int(str(rows[0][0])) if rows else None

    def prune(self, keep: set[str]) -> int:
        marks = ",".join("?" * len(keep))
        sql = f"DELETE FROM lists WHERE version NOT IN ({marks})"  # placeholders only
        try:
            return self._conn().execute(sql, tuple(keep)).rowcount
        except sqlite3.Error as exc:
            self.close()
            raise sqlite_unavailable(self.path, exc) from None

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class RedisSharedLists:
    def __init__(self, url: str, timeout_seconds: float):
        self.url = url
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )

    def get(self, version: str, user_id: int) -> tuple[str, str] | None:
        try:
            value = self.client.hget(REDIS_PREFIX + version, str(user_id))
        except redis.RedisError as exc:
            raise redis_unavailable(self.url, exc) from None
        if not isinstance(value, str) or "|" not in value:
            return None
        fp, _, items = value.partition("|")
        return fp, items

    def put(self, version: str, user_id: int, fingerprint: str, items: str) -> None:
        key = REDIS_PREFIX + version
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(key, str(user_id), f"{fingerprint}|{items}")
            pipe.expire(key, LIST_TTL_SECONDS)
            pipe.execute()
        except redis.RedisError as exc:
            raise redis_unavailable(self.url, exc) from None

    def beat(self) -> None:
        try:
            self.client.set(REDIS_BEAT, now_ms(), ex=int(HEARTBEAT_STALE_SECONDS * 4))
        except redis.RedisError as exc:
            raise redis_unavailable(self.url, exc) from None

    def folder_seen_ms(self) -> int | None:
        try:
            value = self.client.get(REDIS_BEAT)
        except redis.RedisError as exc:
            raise redis_unavailable(self.url, exc) from None
        return int(str(value)) if value is not None else None

    def prune(self, keep: set[str]) -> int:
        """Nothing to do: an unserved version's hash expires `LIST_TTL_SECONDS` after its
        last write."""
        return 0

    def close(self) -> None:
        self.client.close()
