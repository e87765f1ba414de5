"""Fold-ins made when the events arrive (`serve.live.warmer`): a request for a user the warmer
reached is answered without the store or the model, and never with a list older than an event the
worker's index has seen. The feed and the warmer are driven by hand (no threads)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from movierec.core.errors import OnlineStoreUnavailable
from movierec.core.settings import Settings
from movierec.data.events import format_watch
from movierec.data.history import Changes, Seen
from movierec.data.online_sqlite import SqliteHistoryStore
from movierec.registry.routing import Routing, arm_for
from movierec.serve.live import warmer as warm
from movierec.serve.live.answers import LiveHistory, LiveRecommender
from movierec.serve.models import Snapshot
from tests.historykit import T0, write

POOL = [f"m+{j}+2000" for j in range(100)]


def made(version: str, history: list[str], k: int = 20) -> str:
    """The fake model's fold-in: its history's size, then the pool without the history."""
    return ",".join([f"{version}/{len(history)}", *[m for m in POOL if m not in history]][:k])


def previous(version: str, history: list[str], watched: list[str]) -> str:
    """The kept list (made with SPARE more movies) without the movies watched since."""
    kept = made(version, history, 20 + warm.SPARE).split(",")
    return ",".join([m for m in kept if m not in history + watched][:20])


class Model:
    """A served model whose fold-in is a known function of the history, counted."""

    def __init__(self, version: str, cutoff_ms: int = 0):
        self.version, self.cutoff_ms, self.fold = version, cutoff_ms, object()
        self.folds: list[int] = []

    def recommend(self, user_id: int) -> str:
        return "precomputed"

    def recommend_live(self, user_id: int, recent: list[str], k: int) -> tuple[str, str]:
        self.folds.append(user_id)
        return made(self.version, sorted(recent), k), "fold_in"


class Setup:
    def __init__(self, tmp_path: Path, settings: Settings, **changed: object):
        self.store = SqliteHistoryStore(tmp_path / "online.sqlite")
        self.reads = 0
        self.clock = T0
        real = self.store.history

        def counted(user_id: int, since_ms: int) -> list[Seen]:
            self.reads += 1
            return real(user_id, since_ms)

        self.store.history = counted  # type: ignore[method-assign]
        self.stable = Model("v1")
        self.snapshot = Snapshot(None, self.stable, None)  # type: ignore[arg-type]
        self.history = LiveHistory(self.store, poll_seconds=3600)
        self.live = LiveRecommender(
            settings.replace(**changed), self.history, snapshot=lambda: self.snapshot
        )
        assert self.live.warm is not None and self.history.index is not None
        self.warm, self.index = self.live.warm, self.history.index
        self.warm.start = lambda: None  # type: ignore[method-assign]
        self.index.start = lambda: None  # type: ignore[method-assign]

    def watch(self, user: int, movie: str, minute: int = 0) -> None:
        self.clock += timedelta(seconds=1)
        write(self.store, [format_watch(self.clock, user, movie, minute)])

    def warmed(self, user: int, movie: str) -> None:
        """The user watches the movie, the index reads the feed and the warmer folds in."""
        self.watch(user, movie)
        self.index.poll()
        self.warm_all()

    def warm_all(self) -> int:
        done = 0
        while self.warm.warm_next():
            done += 1
        return done

    def ask(self, user: int, model: Model | None = None, arm: str = "stable") -> str:
        return self.live.recommend(model or self.stable, arm, user)  # type: ignore[arg-type]


@pytest.fixture
def setup(tmp_path: Path, settings: Settings) -> Iterator[Setup]:
    s = Setup(tmp_path, settings)
    yield s
    s.store.close()


def _warm_events(event: str) -> float:
    return REGISTRY.get_sample_value("movierec_fold_in_warm_total", {"event": event}) or 0.0


def test_a_user_reached_by_the_warmer_is_answered_without_the_store_or_the_model(
    setup: Setup,
) -> None:
    setup.watch(4, "m+1+2000")
    setup.index.poll()  # the first, full read
    setup.warm_all()
    setup.watch(5, "m+1+2000")
    setup.watch(5, "m+2+2000")
    setup.index.poll()
    computed = _warm_events("computed")
    assert setup.warm_all() == 1 and _warm_events("computed") == computed + 1
    assert setup.stable.folds == [4, 5]
    reads = setup.reads
    for _ in range(3):
        assert setup.ask(5) == made("v1", ["m+1+2000", "m+2+2000"])
    assert setup.reads == reads and setup.stable.folds == [4, 5]  # neither asked again
    assert setup.ask(6) == "precomputed"  # no events: the precomputed list, as before


def test_a_new_event_retires_the_kept_list_at_once_and_its_movie_leaves_the_answer(
    setup: Setup,
) -> None:
    setup.warmed(5, "m+1+2000")
    assert setup.ask(5) == made("v1", ["m+1+2000"])
    setup.watch(5, "m+2+2000")
    assert setup.ask(5) == made("v1", ["m+1+2000"])  # the index has not read the feed yet
    setup.index.poll()  # now it has, and the warmer has not run: the previous list, filtered
    answer = setup.ask(5)
    assert answer == previous("v1", ["m+1+2000"], ["m+2+2000"])
    assert "m+2+2000" not in answer.split(",") and len(answer.split(",")) == 20
    assert setup.stable.folds == [5]  # not folded in on the request
    setup.warm_all()  # then the new list
    assert setup.ask(5) == made("v1", ["m+1+2000", "m+2+2000"]) and setup.stable.folds == [5, 5]
    setup.watch(6, "m+3+2000")  # a user with no list kept yet: folded in on the request
    setup.index.poll()
    assert setup.ask(6) == made("v1", ["m+3+2000"]) and setup.stable.folds == [5, 5, 6]


def test_a_list_made_while_the_user_changed_again_is_not_kept(setup: Setup) -> None:
    setup.watch(5, "m+1+2000")
    setup.index.poll()
    model_fold = setup.stable.recommend_live

    def fold_then_change(user_id: int, recent: list[str], k: int) -> tuple[str, str]:
        answer = model_fold(user_id, recent, k)
        setup.watch(5, "m+2+2000")  # the next event arrives while the warmer folds in
        setup.index.poll()
        return answer

    setup.stable.recommend_live = fold_then_change  # type: ignore[method-assign]
    stale = _warm_events("stale")
    assert setup.warm.warm_next()
    assert _warm_events("stale") == stale + 1
    setup.stable.recommend_live = model_fold  # type: ignore[method-assign]
    assert setup.warm.get("v1", 5) is None
    setup.warm_all()  # queued again by the newer change
    assert setup.warm.get("v1", 5) == made("v1", ["m+1+2000", "m+2+2000"])


def test_a_full_read_forgets_every_kept_list_and_queues_the_latest_users(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warm, "START_USERS", 2)
    for user, minute in ((1, 0), (2, 0), (3, 0)):
        setup.watch(user, f"m+{user}+2000", minute)
    setup.index.poll()  # the first read is full: the two latest users are queued
    assert setup.warm_all() == 2 and sorted(setup.stable.folds) == [2, 3]
    assert setup.warm.get("v1", 3) is not None
    setup.warm.changed(Changes((9, 9), {1: 5, 2: 6, 3: 7}, full=True))
    assert [setup.warm.get("v1", u) for u in (1, 2, 3)] == [None, None, None]


def test_each_user_is_warmed_with_the_model_of_their_arm_and_only_where_it_folds_in(
    tmp_path: Path, settings: Settings
) -> None:
    s = Setup(tmp_path, settings, fold_in_arms="canary")
    canary = Model("v2")
    routing = Routing("v1", "v2", 50, updated_at="2025-03-01T10:00:00+00:00", reason="test")
    s.snapshot = Snapshot(routing, s.stable, canary)  # type: ignore[arg-type]
    for user in range(20):
        s.watch(user, "m+1+2000")
    s.index.poll()
    s.warm_all()
    salt = settings.serving.release_salt
    on_canary = [u for u in range(20) if arm_for(u, routing, salt) == "canary"]
    assert 0 < len(on_canary) < 20
    assert sorted(canary.folds) == on_canary and s.stable.folds == []
    s.store.close()


@pytest.fixture
def small(tmp_path: Path, settings: Settings) -> Iterator[Setup]:
    """At most 3 users waiting and 3 lists kept; user 99's list made."""
    s = Setup(tmp_path, settings, fold_in_warm_users=3)
    s.warmed(99, "m+1+2000")
    yield s
    s.store.close()


def test_the_queue_is_bounded_and_a_failing_store_is_counted(small: Setup) -> None:
    s = small
    for user in range(5):
        s.watch(user, "m+1+2000")
    dropped = _warm_events("dropped")
    s.index.poll()
    assert _warm_events("dropped") == dropped + 2

    def down(user_id: int, since_ms: int) -> list[Seen]:
        raise OnlineStoreUnavailable("unreachable", "the store is down")

    s.store.history = down  # type: ignore[method-assign]
    failed = _warm_events("failed")
    assert s.warm_all() == 3 and _warm_events("failed") == failed + 3
    assert s.stable.folds == [99]


def test_warming_is_off_with_no_users_to_keep(tmp_path: Path, settings: Settings) -> None:
    store = SqliteHistoryStore(tmp_path / "online.sqlite")
    off = settings.replace(fold_in_warm_users=0)
    snap = Snapshot(None, None, None)
    assert LiveRecommender(off, LiveHistory(store), snapshot=lambda: snap).warm is None
    assert LiveRecommender(settings, LiveHistory(store)).warm is None  # no models to warm
    store.close()


def test_while_the_store_cannot_answer_kept_lists_give_way_to_the_precomputed(
    setup: Setup,
) -> None:
    setup.warmed(5, "m+1+2000")
    assert setup.ask(5) == made("v1", ["m+1+2000"])

    def down(cursor: tuple[int, int] | None) -> Changes | None:
        raise OnlineStoreUnavailable("locked", "the store is locked")

    setup.store.changes = down  # type: ignore[method-assign]
    setup.index.poll()
    assert setup.ask(5) == "precomputed"  # as every other user's answer: counted, warned


def test_generations_stay_bounded_and_kept_lists_stay_right_after_a_prune(small: Setup) -> None:
    s = small
    for user in range(1, 40):  # one user per read of the feed, each warmed
        s.watch(user, f"m+{user}+2000")
        s.index.poll()
        s.warm_all()
        assert len(s.warm._generation) <= warm.PRUNE_AT * 3 + 1
    kept = [u for u in range(40) if s.warm.get("v1", u) is not None]
    assert kept == [37, 38, 39]  # the last three made
    s.watch(38, "m+99+2000")
    s.index.poll()
    assert s.warm.get("v1", 38) is None
    assert s.ask(38) == previous("v1", ["m+38+2000"], ["m+99+2000"])


def test_a_newly_routed_model_gets_the_recent_users_lists_before_their_requests(
    setup: Setup,
) -> None:
    setup.warmed(5, "m+1+2000")
    setup.warmed(6, "m+2+2000")
    assert setup.stable.folds == [5, 6]
    setup.warm.warm_next()  # the warmer has seen v1 serve
    v2 = Model("v2")
    setup.snapshot = Snapshot(None, v2, None)  # type: ignore[arg-type]
    setup.warm_all()  # no new event: the users active last are folded in with v2
    assert sorted(v2.folds) == [5, 6]
    assert setup.ask(5, v2) == made("v2", ["m+1+2000"]) and sorted(v2.folds) == [5, 6]
    setup.snapshot = Snapshot(None, setup.stable, None)  # type: ignore[arg-type]
    setup.warm_all()  # back to v1, whose lists are still kept at the users' generations
    assert setup.stable.folds == [5, 6]
