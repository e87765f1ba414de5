"""The online store in SQLite, the default (`online_store=sqlite`): `data/online_store.sqlite`
in WAL mode, so the DataPipeline writes while every gunicorn worker reads, with no server.

One table, `history`, a row per (user, movie) merged by `data.history`'s rule in the UPSERT
itself, so a batch written twice (a pipeline killed before its own commit) or by several
followers in any order leaves the same rows. The writer commits each batch in one transaction
with `synchronous=FULL`, so a batch the pipeline commits after it is durable here too.

Readers open the file read-only, one connection per thread, and wait at most `timeout_ms` for
a lock: a missing, locked or unreadable store raises `OnlineStoreUnavailable` at once, and the
service answers from the precomputed list.

The change feed: each batch also appends, in the same transaction, one `changes` row per user
it wrote (the user's latest event in the batch), numbered by SQLite's AUTOINCREMENT, so the
numbers grow in commit order (the writer holds the write lock from BEGIN IMMEDIATE to COMMIT).
A worker reads the rows after the last number it saw (`changes`), so it knows which users have
events without asking the store on every request. Rows older than `CHANGES_KEEP_SECONDS` are
pruned; a reader whose cursor is older than the oldest row left, or of another file, reads
every user's latest event from `history` instead.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from movierec.core.errors import OnlineStoreUnavailable
from movierec.data.events import ParsedBatch
from movierec.data.history import ROW_COLUMNS, Changes, Seen, history_rows
from movierec.data.sources import Batch

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    user_id INTEGER NOT NULL,
    movie_id TEXT NOT NULL,
    first_ms INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,
    max_minute INTEGER NOT NULL,
    rating INTEGER NOT NULL,
    rating_ms INTEGER NOT NULL,
    written_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, movie_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,
    written_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_by_time ON changes (written_ms);
"""
CHANGE = "INSERT INTO changes (user_id, last_ms, written_ms) VALUES (?, ?, ?)"
LAST_CHANGE = "SELECT seq FROM sqlite_sequence WHERE name = 'changes'"
FIRST_CHANGE = "SELECT min(seq) FROM changes"
CHANGES_AFTER = "SELECT user_id, max(last_ms) FROM changes WHERE seq > ? GROUP BY user_id"
EVERY_USER = "SELECT user_id, max(last_ms) FROM history GROUP BY user_id"
PRUNE_CHANGES = "DELETE FROM changes WHERE written_ms < ?"
CHANGES_KEEP_SECONDS = 3600.0
# the merge rule of data.history: SET expressions see the row as it was before the update
UPSERT = """
INSERT INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (user_id, movie_id) DO UPDATE SET
    first_ms = min(first_ms, excluded.first_ms),
    last_ms = max(last_ms, excluded.last_ms),
    max_minute = max(max_minute, excluded.max_minute),
    rating = CASE WHEN (excluded.rating_ms, excluded.rating) > (rating_ms, rating)
                  THEN excluded.rating ELSE rating END,
    rating_ms = max(rating_ms, excluded.rating_ms),
    written_ms = max(written_ms, excluded.written_ms)
"""
SELECT = (
    "SELECT movie_id, first_ms, last_ms, max_minute, rating, rating_ms FROM history "
    "WHERE user_id = ? AND last_ms > ?"
)
# a user's rows go once nothing was written for them for the retention period
PRUNE = (
    "DELETE FROM history WHERE user_id IN "
    "(SELECT user_id FROM history GROUP BY user_id HAVING max(written_ms) < ?)"
)
PRUNE_EVERY_SECONDS = 3600.0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class SqliteHistoryStore:
    """The SQLite online store: `write_batch` for the DataPipeline, `history` for the service."""

    name = "online"

    def __init__(self, path: Path, *, retention_days: float = 30.0, timeout_ms: float = 50.0):
        self.path = path
        self.retention_ms = int(retention_days * 86_400_000)
        self.timeout = timeout_ms / 1000.0
        self._writer: sqlite3.Connection | None = None
        self._pruned = -float("inf")
        self._local = threading.local()

    # ---- writing (the DataPipeline) -----------------------------------------------------------
    def _connect_writer(self) -> sqlite3.Connection:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise OnlineStoreUnavailable("error", f"{self.path}: journal mode {mode}, not wal")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(SCHEMA)
            self._writer = conn
        return self._writer

    def write_batch(self, source: str, batch: Batch, parsed: ParsedBatch) -> int:
        """Merge the batch's watches and rates; returns the (user, movie) rows written."""
        rows = history_rows(parsed)
        conn = self._connect_writer()
        written = _now_ms()
        columns = [rows[c].tolist() for c in ROW_COLUMNS]  # Python ints: sqlite3 binds them
        values = [(*row, written) for row in zip(*columns, strict=True)]
        latest = rows.groupby("user_id")["last_ms"].max()
        users, last = latest.index.tolist(), latest.tolist()
        changes = [(u, ms, written) for u, ms in zip(users, last, strict=True)]
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(UPSERT, values)
            conn.executemany(CHANGE, changes)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if time.monotonic() - self._pruned > PRUNE_EVERY_SECONDS:
            self.prune(written)
        return len(values)

    def prune(self, now_ms: int | None = None) -> int:
        """Forget the users nothing was written for during the retention period."""
        conn = self._connect_writer()
        self._pruned = time.monotonic()
        now_ms = now_ms or _now_ms()
        conn.execute(PRUNE_CHANGES, (now_ms - int(CHANGES_KEEP_SECONDS * 1000),))
        cur = conn.execute(PRUNE, (now_ms - self.retention_ms,))
        if cur.rowcount:
            log.info("online store: pruned %d rows past the retention period", cur.rowcount)
        return cur.rowcount

    # ---- reading (the service) ----------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        """This thread's read-only connection, reopened when the file was replaced."""
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            self._drop_reader()
            raise OnlineStoreUnavailable("missing", f"{self.path} does not exist") from None
        cached = getattr(self._local, "conn", None)
        if cached is not None and cached[1] == inode:
            return cached[0]
        self._drop_reader()
        try:
            conn = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, timeout=self.timeout, check_same_thread=True
            )
        except sqlite3.Error as exc:
            raise sqlite_unavailable(self.path, exc) from None
        self._local.conn = (conn, inode)
        return conn

    def _drop_reader(self) -> None:
        cached = getattr(self._local, "conn", None)
        if cached is not None:
            cached[0].close()
            self._local.conn = None

    def history(self, user_id: int, since_ms: int) -> list[Seen]:
        conn = self._reader()
        try:
            rows = conn.execute(SELECT, (user_id, since_ms)).fetchall()
        except sqlite3.Error as exc:
            self._drop_reader()
            raise sqlite_unavailable(self.path, exc) from None
        return [Seen(*row) for row in rows]

    def changes(self, cursor: tuple[int, int] | None) -> Changes | None:
        """The users written after `cursor`, read in one transaction (see the module's text)."""
        conn = self._reader()
        inode = self._local.conn[1]
        try:
            conn.execute("BEGIN")
            try:
                return self._changes(conn, inode, cursor)
            finally:
                conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # a file made before the change feed
                return None
            self._drop_reader()
            raise sqlite_unavailable(self.path, exc) from None
        except sqlite3.Error as exc:
            self._drop_reader()
            raise sqlite_unavailable(self.path, exc) from None

    @staticmethod
    def _changes(
        conn: sqlite3.Connection, inode: int, cursor: tuple[int, int] | None
    ) -> Changes | None:
        first = conn.execute(FIRST_CHANGE).fetchone()[0]  # "no such table": a file before it
        last_row = conn.execute(LAST_CHANGE).fetchone()  # None: never written
        last = int(last_row[0]) if last_row else 0
        oldest_left = int(first) if first is not None else last + 1
        if cursor is None or cursor[0] != inode or cursor[1] > last or oldest_left > cursor[1] + 1:
            rows = conn.execute(EVERY_USER).fetchall()
            return Changes((inode, last), {int(u): int(ms) for u, ms in rows}, full=True)
        rows = conn.execute(CHANGES_AFTER, (cursor[1],)).fetchall()
        return Changes((inode, last), {int(u): int(ms) for u, ms in rows}, full=False)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._drop_reader()


def sqlite_unavailable(path: Path, exc: sqlite3.Error) -> OnlineStoreUnavailable:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return OnlineStoreUnavailable("locked", f"{path}: {text}")
    if "unable to open" in text:
        return OnlineStoreUnavailable("missing", f"{path}: {text}")
    return OnlineStoreUnavailable("error", f"{path}: {text}")
