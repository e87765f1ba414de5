"""Fold-in lists shared between workers and `movierec fold-in` (`serve.live.shared_lists`): a user
folded in by one worker is not folded in again by another for the same history; while the fold-in
process beats, a worker waits for its list, and folds in itself when none comes; a failing shared
store costs only the fold-in. Two `Setup`s on one folder are two workers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from movierec.core.errors import OnlineStoreUnavailable
from movierec.core.settings import Settings
from movierec.serve.live import warmer as warm
from movierec.serve.live.shared_lists import SqliteSharedLists, fingerprint, open_shared_lists
from tests.unit.serve.live.test_warmer import Setup, _warm_events, made

DEFER_MS = 40.0
DUE = 3 * DEFER_MS / 1000.0  # a user put off is due within twice the deferral


@pytest.fixture
def workers(tmp_path: Path, settings: Settings) -> Iterator[tuple[Setup, Setup]]:
    a, b = Setup(tmp_path, settings), Setup(tmp_path, settings)
    yield a, b
    a.store.close()
    b.store.close()


def _read_and_warm(*workers: Setup) -> None:
    for w in workers:
        w.index.poll()
        w.warm_all()


def test_a_list_made_by_one_worker_is_taken_by_the_other_for_the_same_history(
    workers: tuple[Setup, Setup],
) -> None:
    a, b = workers
    a.watch(5, "m+1+2000")
    shared = _warm_events("shared")
    _read_and_warm(a, b)
    assert a.stable.folds == [5] and b.stable.folds == []  # b took a's list
    assert _warm_events("shared") == shared + 1
    assert a.ask(5) == b.ask(5) == made("v1", ["m+1+2000"])
    a.watch(5, "m+2+2000")  # a new history: a's list no longer fits it
    _read_and_warm(b, a)
    assert b.stable.folds == [5] and a.stable.folds == [5]  # b folded in, a took b's
    assert a.ask(5) == b.ask(5) == made("v1", ["m+1+2000", "m+2+2000"])


def test_while_the_fold_in_process_beats_a_worker_waits_for_its_list_then_folds_in_itself(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = Setup(tmp_path, settings, fold_in_defer_ms=DEFER_MS)
    folder = Setup(tmp_path, settings, fold_in_defer_ms=0)
    process = open_shared_lists(settings)
    assert process is not None
    process.beat()
    worker.watch(5, "m+1+2000")
    deferred = _warm_events("deferred")
    _read_and_warm(worker)
    assert worker.stable.folds == [] and _warm_events("deferred") == deferred + 1
    assert worker.warm.get("v1", 5) is None
    _read_and_warm(folder)  # the fold-in process makes the list
    assert folder.stable.folds == [5]
    time.sleep(DUE)
    worker.warm_all()
    assert worker.stable.folds == [] and worker.warm.get("v1", 5) == made("v1", ["m+1+2000"])
    worker.watch(5, "m+2+2000")  # the process died: its heartbeat is still fresh, no list comes
    _read_and_warm(worker)
    assert worker.stable.folds == []
    time.sleep(DUE)
    worker.warm_all()  # put off once per change only: folded in here
    assert worker.stable.folds == [5]
    assert worker.warm.get("v1", 5) == made("v1", ["m+1+2000", "m+2+2000"])
    monkeypatch.setattr(warm, "HEARTBEAT_STALE_SECONDS", 0.0)  # the heartbeat went stale
    worker.warm._folder_checked = -float("inf")
    worker.watch(5, "m+3+2000")
    _read_and_warm(worker)  # no waiting for a process that stopped
    assert worker.stable.folds == [5, 5]
    folder.store.close()
    worker.store.close()


def test_a_failing_shared_store_costs_only_the_fold_in(workers: tuple[Setup, Setup]) -> None:
    a, _ = workers

    def down(*_args: object) -> None:
        raise OnlineStoreUnavailable("locked", "the shared lists are locked")

    assert a.warm.shared is not None
    a.warm.shared.get = down  # type: ignore[method-assign,assignment]
    a.warm.shared.put = down  # type: ignore[method-assign]
    failed = _warm_events("share_failed")
    a.watch(5, "m+1+2000")
    _read_and_warm(a)
    assert a.stable.folds == [5] and _warm_events("share_failed") == failed + 2
    assert a.ask(5) == made("v1", ["m+1+2000"])


def test_the_sqlite_lists_keep_the_latest_per_version_and_user_and_prune_unserved_versions(
    tmp_path: Path,
) -> None:
    lists = SqliteSharedLists(tmp_path / "lists.sqlite")
    assert lists.get("v1", 5) is None and lists.folder_seen_ms() is None
    lists.put("v1", 5, "aa", "m1,m2")
    lists.put("v1", 5, "bb", "m3")
    lists.put("v2", 5, "cc", "m4")
    assert lists.get("v1", 5) == ("bb", "m3") and lists.get("v2", 5) == ("cc", "m4")
    lists.beat()
    seen = lists.folder_seen_ms()
    assert seen is not None and abs(seen - time.time() * 1000) < 5_000
    assert lists.prune({"v2"}) == 1 and lists.get("v1", 5) is None
    assert SqliteSharedLists(tmp_path / "lists.sqlite").get("v2", 5) == ("cc", "m4")
    lists.close()


def test_a_corrupt_lists_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "lists.sqlite"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(OnlineStoreUnavailable, match=r"lists\.sqlite"):
        SqliteSharedLists(path).get("v1", 5)


def test_the_fingerprint_is_the_set_of_movies_and_the_length() -> None:
    assert fingerprint(["b", "a", "a"], 30) == fingerprint(["a", "b"], 30)
    assert fingerprint(["a", "b"], 30) != fingerprint(["a", "b", "c"], 30)
    assert fingerprint(["a", "b"], 30) != fingerprint(["a", "b"], 20)
