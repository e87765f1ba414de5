"""Fold-ins computed when the events arrive, off the request path: `FoldInWarmer`.

A fold-in costs about 4 ms of CPU (the merge of three generators, two XGBoost predictions over
150 candidates). On the request path, with wrk keeping every thread busy, that made the
fold-in p99 about 8x the minimal endpoint's (evaluation/bench_serve.py), and the per-worker
cache only helps a user's second request. But a user's list changes only when their history
does, and the store's change feed says whose did: each worker's index of it
(`serve.live.feed_index.RecentUsers`) hands every read's users to the warmer, whose one thread
recomputes each user's list for the model that serves them (their arm, from the routing) and
keeps it. A request then finds the list with one dictionary lookup, as cheap as a precomputed
one. Between an event and its user's new list (the feed's next read, then the fold-in: tens of
milliseconds, more when many users change at once), a request gets the user's previous list
without every movie of their history; a user with no list kept is folded in on the request.

An answer never predates an event the worker has seen. Every user has a generation, and the
feed's reader bumps it before its index shows the user's new events; a kept list is served
only while the generation it was computed at is the user's current one. The warmer reads the
user's generation before their history, so a list that already holds a newer event is merely
recomputed after the next read of the feed. A full read of the feed (the first, or after the
cursor went stale) moves every user's generation and queues the `START_USERS` most recent.

Bounded: at most `max_users` users wait (the oldest are dropped, counted, and folded in on
their request) and at most `max_users` lists are kept (the oldest made go).

Shared (`serve.live.shared_lists`): before folding a user in, the warmer looks for the list another
worker, replica or `movierec fold-in` made from the same history, and takes it if there is one; a
list it makes itself it shares. While `movierec fold-in` runs, a user with no shared list yet is put
off for `defer_seconds` (with a jitter of as much again, so that two workers rarely both give up at
once), once per change, before the warmer folds them in itself.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from movierec.core.errors import OnlineStoreUnavailable
from movierec.core.settings import Settings
from movierec.core.vocabulary import Arm
from movierec.data.history import Changes, HistoryStore
from movierec.registry.routing import arm_for
from movierec.serve.live.feed_index import RecentUsers
from movierec.serve.live.shared_lists import (
    HEARTBEAT_SECONDS,
    HEARTBEAT_STALE_SECONDS,
    SharedLists,
    fingerprint,
    now_ms,
    open_shared_lists,
)
from movierec.serve.metrics import FOLD_IN_WARM
from movierec.serve.models import ServingModel, Snapshot

log = logging.getLogger(__name__)

START_USERS = 2_000  # queued at a full read of the feed: its most recently active users
SPARE = 10  # movies made beyond k: they replace those watched before the next list is made
PRUNE_AT = 4  # generations kept, in multiples of max_users, before those no list needs go
IDLE_SECONDS = 1.0  # the thread's wait when nothing is queued (a change wakes it at once)
EVENTS = ("computed", "shared", "deferred", "stale", "dropped", "failed", "share_failed")


@dataclass(frozen=True)
class WarmPlan:
    """What a warmer folds in and how much it keeps."""

    arms: frozenset[Arm]  # the arms whose users it folds in
    salt: str  # the release salt: which arm a user is on
    k: int  # list length served
    max_users: int  # users waiting, and lists kept, at most
    defer_seconds: float = 0.0  # how long a user waits for `movierec fold-in`'s shared list

    @classmethod
    def for_settings(cls, settings: Settings, defer_seconds: float) -> WarmPlan:
        serving = settings.serving
        return cls(
            settings.serving.fold_in_arm_set,
            serving.release_salt,
            settings.training.recommendations_k,
            max(serving.fold_in_warm_users, 1),
            defer_seconds,
        )


class FoldInWarmer:
    @classmethod
    def for_settings(
        cls,
        settings: Settings,
        store: HistoryStore,
        snapshot: Callable[[], Snapshot],
        index: RecentUsers,
        defer_seconds: float,
    ) -> FoldInWarmer:
        """A warmer fed by `index`, sharing its lists beside the settings' online store."""
        warmer = cls(
            store,
            snapshot,
            WarmPlan.for_settings(settings, defer_seconds),
            open_shared_lists(settings),
            recent_users=index.most_recent,
        )
        index.listener = warmer.changed
        return warmer

    def __init__(
        self,
        store: HistoryStore,
        snapshot: Callable[[], Snapshot],
        plan: WarmPlan,
        shared: SharedLists | None = None,
        recent_users: Callable[[int], list[int]] | None = None,
    ):
        self.store = store
        self.shared = shared
        self.defer_seconds = plan.defer_seconds
        self.recent_users = recent_users  # the index's most recently active users
        self._served: tuple[str, ...] | None = None  # the versions the lists are made for
        self._folder_checked = -float("inf")
        self._folder_alive = False
        self.snapshot = snapshot
        self.arms = plan.arms
        self.salt = plan.salt
        self.k = plan.k
        self.max_users = plan.max_users
        self._counter = itertools.count(1)
        self._floor = next(self._counter)  # every generation below it is gone (a full read)
        self._generation: dict[int, int] = {}
        # (version, user) -> (generation, the answer, the list with SPARE more)
        self._lists: OrderedDict[tuple[str, int], tuple[int, str, list[str]]] = OrderedDict()
        self._queue: OrderedDict[int, bool] = OrderedDict()  # user -> put off once already
        self._deferred: list[tuple[float, int, int]] = []  # heap of (due, user, generation)
        self._busy = -1  # the user being folded in
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.counts = dict.fromkeys(EVENTS, 0)  # this warmer's own (the metric is per process)
        for event in EVENTS:  # every series exported from the start, at 0
            FOLD_IN_WARM.labels(event=event)

    # ---- the request threads ------------------------------------------------------------------
    def get(self, version: str, user_id: int) -> str | None:
        """The user's kept list for the model, if made at their current generation."""
        kept = self._lists.get((version, user_id))
        if kept is None or kept[0] != self._generation.get(user_id, self._floor):
            return None
        return kept[1]

    def previous(self, version: str, user_id: int, watched: set[str]) -> str | None:
        """The user's kept list for the model, whatever its generation, without `watched`:
        the answer while their next list is being made (their previous history's list, so
        without what they watched before; `SPARE` more movies make up for those removed)."""
        kept = self._lists.get((version, user_id))
        if kept is None:
            return None
        return ",".join([m for m in kept[2] if m not in watched][: self.k])

    # ---- the feed's reader --------------------------------------------------------------------
    def changed(self, changes: Changes) -> None:
        """Called by the index for each read of the feed, before it shows the changes."""
        with self._lock:
            if changes.full:
                self._floor = next(self._counter)
                self._generation.clear()
                self._lists.clear()
                self._queue.clear()
                self._deferred.clear()
                start = min(START_USERS, self.max_users)
                users = heapq.nlargest(start, changes.latest, key=changes.latest.__getitem__)
            else:
                users = list(changes.latest)
                for user_id in users:
                    self._generation[user_id] = next(self._counter)
            for user_id in users:
                self._queue[user_id] = False
                self._queue.move_to_end(user_id)
            dropped = self._bound_queue()
            if len(self._generation) > PRUNE_AT * self.max_users:
                self._prune()
        if dropped:
            self._count("dropped", dropped)
        if users:
            self.start()
            self._wake.set()

    def _bound_queue(self) -> int:
        """Drop the oldest waiting users beyond `max_users` (lock held); how many went."""
        dropped = max(len(self._queue) - self.max_users, 0)
        for _ in range(dropped):
            self._queue.popitem(last=False)
        return dropped

    def _prune(self) -> None:
        """Forget the generations of users with no kept list who neither wait nor are being
        folded in: nothing compares with them. (Queued again, such a user's list is made at the
        floor's generation, as everyone's after a full read.)"""
        needed = {user_id for _, user_id in self._lists}
        needed.update(self._queue)
        needed.update(user_id for _, user_id, _ in self._deferred)
        needed.add(self._busy)
        self._generation = {u: g for u, g in self._generation.items() if u in needed}

    # ---- the warmer's thread ------------------------------------------------------------------
    def start(self) -> None:
        """Warm in the background (once: later calls do nothing)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fold-in-warmer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._idle_seconds())
            self._wake.clear()
            while not self._stop.is_set() and self.warm_next():
                pass

    def warm_next(self) -> bool:
        """Fold the oldest queued user in; False when none waits or no model is loaded."""
        snap = self.snapshot()
        if snap.stable is None:
            return False
        self._follow_versions(snap)
        with self._lock:
            self._release_due()
            if not self._queue:
                return False
            user_id, put_off = self._queue.popitem(last=False)
            generation = self._generation.get(user_id, self._floor)
            self._busy = user_id
        model = self._model_of(snap, user_id)
        if model is None:
            return True
        try:
            recent = self.store.history(user_id, model.cutoff_ms)
            if not recent:  # nothing since this model's cutoff: the precomputed list
                return True
            movies = [s.movie_id for s in recent]
            fp = fingerprint(movies, self.k + SPARE)
            made = self._shared_list(model.version, user_id, fp)
            if made is None and not put_off and self._folder_running():
                self._put_off(user_id, generation)
                return True
            if made is None:
                made, _ = model.recommend_live(user_id, movies, self.k + SPARE)
                self._share(model.version, user_id, fp, made)
                event = "computed"
            else:
                event = "shared"
        except OnlineStoreUnavailable:  # the requests fall back, warned and counted there
            self._count("failed")
            return True
        except Exception:  # the request folds the user in again, and counts a failure there
            log.exception("warming user %d's fold-in (model %s) failed", user_id, model.version)
            self._count("failed")
            return True
        with self._lock:
            if generation != self._generation.get(user_id, self._floor):
                self._count("stale")  # queued again by the newer change
                return True
            key = (model.version, user_id)
            items = made.split(",")
            self._lists[key] = (generation, ",".join(items[: self.k]), items)
            self._lists.move_to_end(key)
            while len(self._lists) > self.max_users:
                self._lists.popitem(last=False)
        self._count(event)
        return True

    def _count(self, event: str, n: int = 1) -> None:
        self.counts[event] += n
        FOLD_IN_WARM.labels(event=event).inc(n)

    # ---- sharing ------------------------------------------------------------------------------
    def _shared_list(self, version: str, user_id: int, fp: str) -> str | None:
        """The list made from this very history by another worker or process, if any."""
        if self.shared is None:
            return None
        try:
            found = self.shared.get(version, user_id)
        except OnlineStoreUnavailable as exc:
            self._share_failed(exc)
            return None
        return found[1] if found is not None and found[0] == fp else None

    def _share(self, version: str, user_id: int, fp: str, items: str) -> None:
        if self.shared is not None:
            try:
                self.shared.put(version, user_id, fp, items)
            except OnlineStoreUnavailable as exc:
                self._share_failed(exc)

    def _share_failed(self, exc: OnlineStoreUnavailable) -> None:
        self._count("share_failed")
        log.debug("shared fold-in lists: %s", exc)

    def _folder_running(self) -> bool:
        """Whether `movierec fold-in` beat lately (read at most every HEARTBEAT_SECONDS)."""
        if self.shared is None or self.defer_seconds <= 0:
            return False
        now = time.monotonic()
        if now - self._folder_checked >= HEARTBEAT_SECONDS:
            self._folder_checked = now
            try:
                seen = self.shared.folder_seen_ms()
            except OnlineStoreUnavailable as exc:
                self._share_failed(exc)
                seen = None
            stale = HEARTBEAT_STALE_SECONDS * 1000
            self._folder_alive = seen is not None and now_ms() - seen < stale
        return self._folder_alive

    def _put_off(self, user_id: int, generation: int) -> None:
        """Look for the user's shared list again in `defer_seconds` (plus jitter)."""
        due = time.monotonic() + self.defer_seconds * (1.0 + random.random())
        with self._lock:
            heapq.heappush(self._deferred, (due, user_id, generation))
        self._count("deferred")

    def _release_due(self) -> None:
        """Queue the users put off whose time came, unless they changed since (then they are
        queued already, as a new change). Called with the lock held."""
        now = time.monotonic()
        while self._deferred and self._deferred[0][0] <= now:
            _, user_id, generation = heapq.heappop(self._deferred)
            if generation == self._generation.get(user_id, self._floor):
                self._queue.setdefault(user_id, True)

    def _idle_seconds(self) -> float:
        """How long the thread may sleep: until the next user put off is due, at most IDLE."""
        with self._lock:
            if not self._deferred:
                return IDLE_SECONDS
            return min(IDLE_SECONDS, max(self._deferred[0][0] - time.monotonic(), 0.0))

    def _follow_versions(self, snap: Snapshot) -> None:
        """When another model comes to serve (a new stable or canary), queue the most recently
        active users (`START_USERS`) who have no list kept for the model that serves them now:
        their lists are made before their requests, as at a worker's start, rather than on
        them. (A worker's first models need nothing: its first read of the feed queues them.)"""
        served = tuple(m.version for m in (snap.stable, snap.canary) if m is not None)
        if served == self._served:
            return
        first, self._served = self._served is None, served
        if first or self.recent_users is None:
            return
        users = self.recent_users(min(START_USERS, self.max_users))
        with self._lock:
            for user_id in users:
                model = self._model_of(snap, user_id)
                if model is None or user_id in self._queue:
                    continue
                if self.get(model.version, user_id) is None:
                    self._queue[user_id] = False
            dropped = self._bound_queue()
        if dropped:
            self._count("dropped", dropped)
        self.start()
        self._wake.set()

    def _model_of(self, snap: Snapshot, user_id: int) -> ServingModel | None:
        """The model that answers the user, when its arm folds in and it has a fold-in."""
        arm, model = "stable", snap.stable
        routing = snap.routing
        if snap.canary and routing and arm_for(user_id, routing, self.salt) == "canary":
            arm, model = "canary", snap.canary
        if arm not in self.arms or model is None or model.fold is None:
            return None
        return model
