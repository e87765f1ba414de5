"""Fold-ins computed when the events arrive, off the request path: `FoldInWarmer`.

A fold-in costs about 4 ms of CPU (the merge of three generators, two XGBoost predictions over
150 candidates). On the request path, with wrk keeping every thread busy, that made the
fold-in p99 about 8x the minimal endpoint's (evaluation/bench_serve.py), and the per-worker
cache only helps a user's second request. But a user's list changes only when their history
does, and the store's change feed says whose did: each worker's index of it
(`serve.recent.RecentUsers`) hands every read's users to the warmer, whose one thread
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
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

from movierec.core.errors import OnlineStoreUnavailable
from movierec.data.history import Changes, HistoryStore
from movierec.registry.routing import arm_for
from movierec.serve.metrics import FOLD_IN_WARM
from movierec.serve.models import ServingModel, Snapshot

log = logging.getLogger(__name__)

START_USERS = 2_000  # queued at a full read of the feed: its most recently active users
SPARE = 10  # movies made beyond k: they replace those watched before the next list is made
PRUNE_AT = 4  # generations kept, in multiples of max_users, before those no list needs go
IDLE_SECONDS = 1.0  # the thread's wait when nothing is queued (a change wakes it at once)
EVENTS = ("computed", "stale", "dropped", "failed")


class FoldInWarmer:
    def __init__(
        self,
        store: HistoryStore,
        snapshot: Callable[[], Snapshot],
        arms: frozenset[str],
        salt: str,
        k: int,
        max_users: int,
    ):
        self.store = store
        self.snapshot = snapshot
        self.arms = arms
        self.salt = salt
        self.k = k
        self.max_users = max_users
        self._counter = itertools.count(1)
        self._floor = next(self._counter)  # every generation below it is gone (a full read)
        self._generation: dict[int, int] = {}
        # (version, user) -> (generation, the answer, the list with SPARE more)
        self._lists: OrderedDict[tuple[str, int], tuple[int, str, list[str]]] = OrderedDict()
        self._queue: OrderedDict[int, None] = OrderedDict()
        self._busy = -1  # the user being folded in
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
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
                start = min(START_USERS, self.max_users)
                users = heapq.nlargest(start, changes.latest, key=changes.latest.__getitem__)
            else:
                users = list(changes.latest)
                for user_id in users:
                    self._generation[user_id] = next(self._counter)
            for user_id in users:
                self._queue[user_id] = None
                self._queue.move_to_end(user_id)
            dropped = len(self._queue) - self.max_users
            for _ in range(max(dropped, 0)):
                self._queue.popitem(last=False)
            if len(self._generation) > PRUNE_AT * self.max_users:
                self._prune()
        if dropped > 0:
            FOLD_IN_WARM.labels(event="dropped").inc(dropped)
        if users:
            self.start()
            self._wake.set()

    def _prune(self) -> None:
        """Forget the generations of users with no kept list who neither wait nor are being
        folded in: nothing compares with them. (Queued again, such a user's list is made at the
        floor's generation, as everyone's after a full read.)"""
        needed = {user_id for _, user_id in self._lists}
        needed.update(self._queue)
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
            self._wake.wait(IDLE_SECONDS)
            self._wake.clear()
            while not self._stop.is_set() and self.warm_next():
                pass

    def warm_next(self) -> bool:
        """Fold the oldest queued user in; False when none waits or no model is loaded."""
        snap = self.snapshot()
        if snap.stable is None:
            return False
        with self._lock:
            if not self._queue:
                return False
            user_id, _ = self._queue.popitem(last=False)
            generation = self._generation.get(user_id, self._floor)
            self._busy = user_id
        model = self._model_of(snap, user_id)
        if model is None:
            return True
        try:
            recent = self.store.history(user_id, model.cutoff_ms)
            if not recent:  # nothing since this model's cutoff: the precomputed list
                return True
            made, _ = model.recommend_live(user_id, [s.movie_id for s in recent], self.k + SPARE)
        except OnlineStoreUnavailable:  # the requests fall back, warned and counted there
            FOLD_IN_WARM.labels(event="failed").inc()
            return True
        except Exception:  # the request folds the user in again, and counts a failure there
            log.exception("warming user %d's fold-in (model %s) failed", user_id, model.version)
            FOLD_IN_WARM.labels(event="failed").inc()
            return True
        with self._lock:
            if generation != self._generation.get(user_id, self._floor):
                FOLD_IN_WARM.labels(event="stale").inc()  # queued again by the newer change
                return True
            key = (model.version, user_id)
            items = made.split(",")
            self._lists[key] = (generation, ",".join(items[: self.k]), items)
            self._lists.move_to_end(key)
            while len(self._lists) > self.max_users:
                self._lists.popitem(last=False)
        FOLD_IN_WARM.labels(event="computed").inc()
        return True

    def _model_of(self, snap: Snapshot, user_id: int) -> ServingModel | None:
        """The model that answers the user, when its arm folds in and it has a fold-in."""
        arm, model = "stable", snap.stable
        routing = snap.routing
        if snap.canary and routing and arm_for(user_id, routing, self.salt) == "canary":
            arm, model = "canary", snap.canary
        if arm not in self.arms or model is None or model.fold is None:
            return None
        return model
