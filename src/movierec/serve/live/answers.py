"""Live answers: a user with events since the model's training cutoff gets a list folded in
from their whole history, without what they watched; a user without gets the precomputed list.

The online store (`data.online_store`, SQLite or Redis) is asked once per request about a user who
has events since the cutoff. The store's change feed (SQLite's and Redis's) tells each worker who
has events (`serve.live.feed_index.RecentUsers`), so a user with none is answered without a query; a
store without one (a SQLite file made before the feed) is asked on every request. When it cannot
answer - missing, locked, unreachable (Redis down), or anything else - the request is answered from
the precomputed list, never a 5xx: `movierec_live_fallbacks_total{reason}` counts it, a warning is
logged (at most one per reason every `WARN_EVERY_SECONDS`), and a store that is locked or
unreachable is left alone for `RETRY_SECONDS`, so that its time-out does not slow every request (a
missing SQLite file costs one stat: it is looked for each time). While the index cannot read the
feed, every request falls back the same way, counted with the index's reason. Which arms fold users
in is a setting (`fold_in_arms`): the same model can be served precomputed as stable and folded in
as canary, to measure what fold-in is worth online.

Most fold-ins are made before the request: each worker's warmer (`serve.live.warmer`) folds a user
in when the change feed shows their events, and a request finds that list first, while the store
answers (a list kept from before an outage is not served during it: the precomputed list is,
counted, as for everyone). Until the warmer has made a changed user's new list, their previous one
is served without the movies of their history (`filtered`); a user with no list kept is folded in on
the request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from movierec.core.errors import OnlineStoreUnavailable
from movierec.core.settings import Settings
from movierec.core.validation import ARMS
from movierec.data.history import ChangeFeed, HistoryStore, Seen
from movierec.data.online_store import open_online_store
from movierec.serve.live.feed_index import RecentUsers
from movierec.serve.live.warmer import FoldInWarmer
from movierec.serve.metrics import LIVE_ANSWERS_BY, LIVE_FALLBACKS
from movierec.serve.models import ServingModel, Snapshot

log = logging.getLogger(__name__)

WARN_EVERY_SECONDS = 60.0
RETRY_SECONDS = 1.0
BACK_OFF = ("locked", "unreachable", "error")  # costly to try (a time-out): not per request
REASONS = ("missing", "locked", "unreachable", "error", "fold_in_error")
PATHS = ("precomputed", "kept", "fold_in", "filtered", "fallback")


class LiveHistory:
    """The online store as the service reads it: a user's recent movies, or None when the
    store cannot answer (counted, warned, backed off)."""

    def __init__(self, store: HistoryStore | None, poll_seconds: float = 0.1):
        self.store = store
        self.index = RecentUsers(store, poll_seconds) if isinstance(store, ChangeFeed) else None
        self._skip_until = 0.0
        self._skip_reason = ""
        self._warned: dict[str, float] = {}
        self._lock = threading.Lock()

    def recent(self, user_id: int, since_ms: int) -> list[Seen] | None:
        """The movies with an event after `since_ms` ([] without a store), or None."""
        if self.store is None:
            return []
        if time.monotonic() < self._skip_until:
            LIVE_FALLBACKS.labels(reason=self._skip_reason).inc()
            return None
        if self.index is not None:
            self.index.start()
            problem = self.index.problem
            if problem is not None:
                self.failed(problem.reason, str(problem))
                return None
            if self.index.ready and self.index.latest(user_id) <= since_ms:
                return []
        try:
            return self.store.history(user_id, since_ms)
        except OnlineStoreUnavailable as exc:
            self.failed(exc.reason, str(exc))
        except Exception as exc:  # a request never fails because of the store
            self.failed("error", f"online store: {type(exc).__name__}: {exc}")
        return None

    def answering(self) -> bool:
        """Whether the store answered its last read (a list folded in from it may be served
        while it does; while it does not, every answer is the precomputed list, counted)."""
        index = self.index
        return time.monotonic() >= self._skip_until and (index is None or index.problem is None)

    def failed(self, reason: str, message: str) -> None:
        """Count one fallback, warn now and then, and skip the store for a moment."""
        LIVE_FALLBACKS.labels(reason=reason).inc()
        now = time.monotonic()
        if reason in BACK_OFF:
            self._skip_reason, self._skip_until = reason, now + RETRY_SECONDS
        with self._lock:
            if now - self._warned.get(reason, -WARN_EVERY_SECONDS) < WARN_EVERY_SECONDS:
                return
            self._warned[reason] = now
        log.warning("answering from the precomputed lists: %s", message)


class LiveRecommender:
    """Picks, per request, the precomputed list or a fold-in, as the module docstring says."""

    def __init__(
        self,
        settings: Settings,
        history: LiveHistory | None = None,
        snapshot: Callable[[], Snapshot] | None = None,
    ):
        self.k = settings.training.recommendations_k
        self.arms = settings.serving.fold_in_arm_set
        self.history = history or LiveHistory(
            open_online_store(settings), settings.serving.online_store_poll_ms / 1000.0
        )
        # with the models' snapshot and a change feed: fold-ins made when the events arrive
        self.warm: FoldInWarmer | None = None
        index, store = self.history.index, self.history.store
        warm_users = settings.serving.fold_in_warm_users
        if snapshot and index and store and self.arms and warm_users > 0:
            defer = settings.serving.fold_in_defer_ms / 1000.0
            self.warm = FoldInWarmer.for_settings(settings, store, snapshot, index, defer)
        for reason in REASONS:  # every series exported from the start, at 0
            LIVE_FALLBACKS.labels(reason=reason)
        for arm in ARMS:
            for path in PATHS:
                LIVE_ANSWERS_BY(arm, path)

    def start(self) -> None:
        """Read the change feed from now on (the warmer folds the latest users in at once),
        rather than from the first request that asks."""
        if self.history.index is not None:
            self.history.index.start()

    def recommend(self, model: ServingModel, arm: str, user_id: int) -> str:
        """Comma-joined movie ids, best first."""
        if arm not in self.arms:
            return self._answer(arm, "precomputed", model.recommend(user_id))
        if self.warm is not None and self.history.answering():
            warmed = self.warm.get(model.version, user_id)
            if warmed is not None:
                return self._answer(arm, "kept", warmed)
        recent = self.history.recent(user_id, model.cutoff_ms)
        if recent is None:
            return self._answer(arm, "fallback", model.recommend(user_id))
        if not recent:
            return self._answer(arm, "precomputed", model.recommend(user_id))
        movies = [s.movie_id for s in recent]
        if self.warm is not None:  # the next list is being made: the previous one, filtered
            previous = self.warm.previous(model.version, user_id, set(movies))
            if previous is not None:
                return self._answer(arm, "filtered", previous)
        try:
            items, path = model.recommend_live(user_id, movies, self.k)
        except Exception as exc:  # counted and answered from the precomputed list
            log.exception("fold-in of model %s failed for user %d", model.version, user_id)
            self.history.failed("fold_in_error", f"fold-in failed: {exc}")
            return self._answer(arm, "fallback", model.recommend(user_id))
        return self._answer(arm, path, items)

    @staticmethod
    def _answer(arm: str, path: str, items: str) -> str:
        LIVE_ANSWERS_BY(arm, path).inc()
        return items
