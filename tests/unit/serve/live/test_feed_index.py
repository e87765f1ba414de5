"""The per-worker index of who has events in the online store: kept from the change feed, and
a request for a user without events since the cutoff never queries the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from movierec.core.errors import OnlineStoreUnavailable
from movierec.data.history import Changes, Seen
from movierec.data.online_sqlite import SqliteHistoryStore
from movierec.serve.live import feed_index as recent
from movierec.serve.live.answers import LiveHistory
from movierec.serve.live.feed_index import RecentUsers
from tests.historykit import event_lines, write


class Feed:
    """A change feed that answers what a test queues, and counts history reads."""

    def __init__(self) -> None:
        self.answers: list[Changes | Exception | None] = []
        self.reads = 0

    def changes(self, cursor: tuple[int, int] | None) -> Changes | None:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def history(self, user_id: int, since_ms: int) -> list[Seen]:
        self.reads += 1
        return [Seen("m", since_ms + 1, since_ms + 1)]


def test_a_full_read_then_changes_give_each_users_latest_event() -> None:
    feed = Feed()
    feed.answers = [
        Changes((1, 5), {3: 100, 1: 50}, full=True),
        Changes((1, 7), {1: 40, 9: 300}, full=False),  # 40 < 50: never moves back
    ]
    index = RecentUsers(feed, 0.1)
    index.poll()
    assert index.ready and (index.latest(1), index.latest(3), index.latest(9)) == (50, 100, -1)
    index.poll()
    assert (index.latest(1), index.latest(3), index.latest(9)) == (50, 100, 300)


def test_the_most_recent_users_come_from_the_arrays_and_the_changes_since() -> None:
    feed = Feed()
    feed.answers = [
        Changes((1, 5), {u: 100 * u for u in range(1, 9)}, full=True),
        Changes((1, 7), {2: 5_000, 20: 950}, full=False),
    ]
    index = RecentUsers(feed, 0.1)
    index.poll()
    assert index.most_recent(3) == [8, 7, 6] and index.most_recent(50)[-1] == 1
    index.poll()
    assert index.most_recent(3) == [2, 20, 8]


def test_changes_beyond_the_merge_size_are_merged_into_the_arrays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recent, "MERGE_AT", 2)
    feed = Feed()
    feed.answers = [
        Changes((1, 1), {5: 10}, full=True),
        Changes((1, 2), {5: 20, 6: 30}, full=False),
    ]
    index = RecentUsers(feed, 0.1)
    index.poll()
    index.poll()
    users, last, pending = index._state
    assert users.tolist() == [5, 6] and last.tolist() == [20, 30] and pending == {}
    assert index.latest(5) == 20


def test_a_failed_read_is_kept_as_the_problem_until_a_read_succeeds() -> None:
    feed = Feed()
    feed.answers = [
        OnlineStoreUnavailable("missing", "gone"),
        RuntimeError("boom"),
        Changes((1, 1), {}, full=True),
        None,  # the file was replaced by one without a feed
    ]
    index = RecentUsers(feed, 0.1)
    index.poll()
    assert index.problem is not None and index.problem.reason == "missing" and not index.ready
    index.poll()
    assert index.problem is not None and index.problem.reason == "error"
    index.poll()
    assert index.problem is None and index.ready
    index.poll()
    assert index.problem is None and not index.ready


def test_only_users_with_events_since_the_cutoff_are_looked_up(tmp_path: Path) -> None:
    store = SqliteHistoryStore(tmp_path / "online.sqlite")
    lines = event_lines(1, 300, users=20)
    write(store, lines)
    history = LiveHistory(store, poll_seconds=3600)  # the test polls by hand
    assert history.index is not None
    history.index.poll()
    reads = 0
    real = store.history

    def counted(user_id: int, since_ms: int) -> list[Seen]:
        nonlocal reads
        reads += 1
        return real(user_id, since_ms)

    store.history = counted  # type: ignore[method-assign]
    latest = history.index.latest(7)
    assert latest > 0
    assert history.recent(7, latest) == [] and reads == 0  # nothing after the cutoff: no query
    assert history.recent(10**9, 0) == [] and reads == 0  # a user the store never saw
    assert history.recent(7, latest - 1) != [] and reads == 1  # events since: asked
    history.index.stop()
    store.close()


def test_while_the_feed_fails_every_request_falls_back() -> None:
    feed = Feed()
    feed.answers = [OnlineStoreUnavailable("locked", "busy")]
    history = LiveHistory(feed, poll_seconds=3600)  # type: ignore[arg-type]
    assert history.index is not None
    history.index.poll()
    history.index.start = lambda: None  # type: ignore[method-assign]
    assert history.recent(1, 0) is None and feed.reads == 0
