"""The SQLite online store: the store contract, WAL mode, retention, and each way it can fail
to answer (missing, locked, not a database), always as `OnlineStoreUnavailable` within the
time-out."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from movierec.core.errors import OnlineStoreUnavailable
from movierec.data.online_sqlite import SqliteHistoryStore
from tests.historykit import check_contract, event_lines, expected, stored, write


def test_the_store_contract(tmp_path: Path) -> None:
    check_contract(lambda name: SqliteHistoryStore(tmp_path / f"{name}.sqlite"))


def test_wal_mode_lets_a_reader_see_each_commit_while_the_writer_stays_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.sqlite"
    writer = SqliteHistoryStore(path)
    reader = SqliteHistoryStore(path)
    write(writer, event_lines(1, 200))
    assert stored(reader) == expected(event_lines(1, 200))
    write(writer, event_lines(2, 200))
    assert stored(reader) == expected(event_lines(1, 200) + event_lines(2, 200))
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    writer.close()
    reader.close()


def test_a_missing_store_is_unavailable_and_found_once_it_exists(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    reader = SqliteHistoryStore(path)
    with pytest.raises(OnlineStoreUnavailable) as err:
        reader.history(1, 0)
    assert err.value.reason == "missing" and str(path) in str(err.value)
    writer = SqliteHistoryStore(path)
    write(writer, event_lines(1, 100))
    assert stored(reader) == expected(event_lines(1, 100))
    path.unlink()  # deleted under the reader: it must not keep reading the old file
    with pytest.raises(OnlineStoreUnavailable) as err:
        reader.history(1, 0)
    assert err.value.reason == "missing"


def test_a_locked_store_is_unavailable_within_the_time_out(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    writer = SqliteHistoryStore(path)
    write(writer, event_lines(1, 100))
    writer.close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    reader = SqliteHistoryStore(path, timeout_ms=50)
    start = time.perf_counter()
    with pytest.raises(OnlineStoreUnavailable) as err:
        reader.history(1, 0)
    assert err.value.reason == "locked"
    assert time.perf_counter() - start < 1.0
    holder.execute("COMMIT")
    holder.close()
    assert stored(reader) == expected(event_lines(1, 100))


def test_a_file_that_is_not_a_database_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OnlineStoreUnavailable) as err:
        SqliteHistoryStore(path).history(1, 0)
    assert err.value.reason == "error" and "not a database" in str(err.value)


def test_users_without_a_write_during_the_retention_period_are_pruned(tmp_path: Path) -> None:
    store = SqliteHistoryStore(tmp_path / "store.sqlite", retention_days=1.0)
    write(store, event_lines(1, 200))
    now = time.time_ns() // 1_000_000
    assert store.prune(now) == 0
    assert store.prune(now + 2 * 86_400_000) > 0
    assert stored(store) == {}


def _latest(lines: list[str]) -> dict[int, int]:
    """Each user's latest event in `lines`, as the change feed must report it."""
    return {u: max(s.last_ms for s in seen) for u, seen in expected(lines).items()}


def test_the_change_feed_names_every_user_written_since_a_cursor(tmp_path: Path) -> None:
    store = SqliteHistoryStore(tmp_path / "online.sqlite")
    a, b = event_lines(1, 300), event_lines(2, 300, users=50)
    write(store, a)
    first = store.changes(None)
    assert first is not None and first.full and first.latest == _latest(a)
    write(store, b)
    write(store, b[:40])  # a batch seen twice: the same users, no other
    later = store.changes(first.cursor)
    assert later is not None and not later.full
    assert later.latest == _latest(b)
    nothing = store.changes(later.cursor)
    assert nothing is not None and nothing.latest == {} and nothing.cursor == later.cursor
    store.close()


def test_a_cursor_older_than_what_is_left_or_of_another_file_reads_every_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "online.sqlite"
    store = SqliteHistoryStore(path)
    a, b = event_lines(1, 200), event_lines(2, 200, users=50)
    write(store, a)
    cursor = store.changes(None).cursor  # type: ignore[union-attr]
    write(store, b)
    monkeypatch.setattr("movierec.data.online_sqlite.CHANGES_KEEP_SECONDS", -1.0)
    store.prune()  # every change row goes: what the cursor missed is gone
    stale = store.changes(cursor)
    assert stale is not None and stale.full and stale.latest == _latest(a + b)
    store.close()
    path.unlink()
    other = SqliteHistoryStore(path)
    write(other, b)
    assert other.changes(stale.cursor).full  # type: ignore[union-attr]
    other.close()


def test_a_store_made_before_the_change_feed_has_none(tmp_path: Path) -> None:
    path = tmp_path / "online.sqlite"
    store = SqliteHistoryStore(path)
    lines = event_lines(1, 50)
    write(store, lines)
    store.close()
    with sqlite3.connect(path) as conn:  # as the file was before the feed
        conn.execute("DROP TABLE changes")
        conn.execute("DELETE FROM sqlite_sequence")
    reader = SqliteHistoryStore(path)
    assert reader.changes(None) is None
    assert stored(reader) == expected(lines)  # reads still work
    reader.close()
