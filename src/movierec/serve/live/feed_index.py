"""Which users have events in the online store, per worker: `RecentUsers`, an index of each
user's latest event kept up to date from the store's change feed (`data.history.ChangeFeed`).

Most requests come from users with nothing new since the model's training cutoff. Asking the
store about each of them costs a query per request (measured on the SQLite store with ml-1m's
users: 50 us with few rows, 360 us for a user with 165 older rows, against about 100 us for
all of Flask's own work on a request). With the index, a request asks the store only when the
user's latest event is after the cutoff; everyone else is answered from the precomputed list
after a dictionary lookup and a binary search.

A background thread reads the feed every `poll_seconds`: the first read (or one after the
cursor went stale) loads every user's latest event into two sorted arrays; later reads add the
users written since to a small dictionary, merged into the arrays when it grows. The state is
one tuple replaced whole, so request threads never lock. Until the first read succeeds, or
while the store has no feed (a file made before it), `ready` is False and the service asks the
store on every request, as it did without the index. When a read fails, `problem` says why
until the next read succeeds: the service then answers from the precomputed lists, counted.
"""

from __future__ import annotations

import heapq
import logging
import threading
from collections.abc import Callable

import numpy as np

from movierec.core.errors import OnlineStoreUnavailable
from movierec.data.history import ChangeFeed, Changes
from movierec.model.arrays import position

log = logging.getLogger(__name__)

MERGE_AT = 50_000  # users in the dictionary that trigger a merge into the sorted arrays
_EMPTY = np.empty(0, dtype=np.int64)


class RecentUsers:
    def __init__(self, feed: ChangeFeed, poll_seconds: float):
        self.feed = feed
        self.poll_seconds = poll_seconds
        self.ready = False
        self.problem: OnlineStoreUnavailable | None = None
        self._state: tuple[np.ndarray, np.ndarray, dict[int, int]] = (_EMPTY, _EMPTY, {})
        self._cursor: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # told every read's changes before they show (serve.live.warmer: fold-ins made on arrival)
        self.listener: Callable[[Changes], None] | None = None

    def start(self) -> None:
        """Read the feed in the background (once: later calls do nothing)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="recent-users", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def latest(self, user_id: int) -> int:
        """The user's latest event (ms) as of the last read; -1 when they have none."""
        users, last, recent = self._state
        found = recent.get(user_id, -1)
        pos = position(users.data, user_id)
        return found if pos < 0 else max(found, last.data[pos])

    def most_recent(self, n: int) -> list[int]:
        """The `n` users with the latest events as of the last read, latest first."""
        users, last, recent = self._state
        if users.size > n:
            top = np.argpartition(-last, n - 1)[:n]
            users, last = users[top], last[top]
        latest = dict(zip(users.tolist(), last.tolist(), strict=True))
        for user_id, ms in list(recent.items()):
            latest[user_id] = max(ms, latest.get(user_id, -1))
        return heapq.nlargest(n, latest, key=latest.__getitem__)

    def _run(self) -> None:
        while True:
            self.poll()
            if self._stop.wait(self.poll_seconds):
                return

    def poll(self) -> None:
        """One read of the feed; never raises (a failure is kept in `problem`)."""
        try:
            changes = self.feed.changes(self._cursor)
        except OnlineStoreUnavailable as exc:
            self.problem = exc
            return
        except Exception as exc:  # the thread must survive anything the store raises
            log.exception("reading the online store's change feed failed")
            self.problem = OnlineStoreUnavailable("error", f"change feed: {exc}")
            return
        self.problem = None
        if changes is None:  # a store without a feed: asked on every request
            self.ready, self._cursor = False, None
            return
        self._apply(changes)
        self.ready = True

    def _apply(self, changes: Changes) -> None:
        if self.listener is not None:
            self.listener(changes)
        self._cursor = changes.cursor
        if changes.full:
            self._state = (*_sorted(changes.latest), {})
            return
        users, last, recent = self._state
        for user_id, ms in changes.latest.items():
            if ms > recent.get(user_id, -1):
                recent[user_id] = ms  # seen by request threads at once: a dict store is atomic
        if len(recent) >= MERGE_AT:
            merged = dict(zip(users.tolist(), last.tolist(), strict=True))
            for user_id, ms in recent.items():
                merged[user_id] = max(ms, merged.get(user_id, -1))
            self._state = (*_sorted(merged), {})


def _sorted(latest: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    users = np.fromiter(latest.keys(), dtype=np.int64, count=len(latest))
    last = np.fromiter(latest.values(), dtype=np.int64, count=len(latest))
    order = np.argsort(users, kind="stable")
    return users[order], last[order]
