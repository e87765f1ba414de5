"""`movierec fold-in`: a process beside the service that folds users in as their events arrive
and shares the lists (`serve.live.shared_lists`), so the workers that answer requests take them
instead of folding in themselves.

It runs what a worker runs off the request path, without Flask:
- the routing and the models (`ModelSet`, hash-checked, re-read on a change);
- an index of the online store's change feed (`RecentUsers`);
- a warmer that never puts a user off (`FoldInWarmer` with `defer_seconds=0`).

Two things are its own. Every `HEARTBEAT_SECONDS` it renews its heartbeat, which makes the
workers wait for its lists. Every `PRUNE_SECONDS` it forgets the shared lists of versions that
are no longer served.

Without it, the workers fold in themselves, and still share. When it stops (SIGTERM/SIGINT)
the heartbeat goes stale within `HEARTBEAT_STALE_SECONDS`, and the workers stop waiting. One
such process is enough; several would do the same work.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from movierec.core.errors import ConfigError, OnlineStoreUnavailable
from movierec.core.settings import Settings
from movierec.data.history import ChangeFeed
from movierec.data.online_store import open_online_store
from movierec.serve.live.feed_index import RecentUsers
from movierec.serve.live.shared_lists import HEARTBEAT_SECONDS
from movierec.serve.live.warmer import FoldInWarmer
from movierec.serve.models import ModelSet

log = logging.getLogger(__name__)

PRUNE_SECONDS = 600.0
REPORT_SECONDS = 60.0


@dataclass
class FolderReport:
    computed: int
    shared: int
    failed: int
    seconds: float

    def summary(self) -> dict[str, float]:
        return {k: round(v, 1) if isinstance(v, float) else v for k, v in vars(self).items()}


class Folder:
    def __init__(self, settings: Settings):
        store = open_online_store(settings)
        if store is None or not isinstance(store, ChangeFeed):
            raise ConfigError(
                "movierec fold-in needs an online store with a change feed "
                "(MOVIEREC_ONLINE_STORE=sqlite or redis)"
            )
        if not settings.serving.fold_in_arm_set:
            raise ConfigError("MOVIEREC_FOLD_IN_ARMS is empty: no arm folds users in")
        self.settings = settings
        self.store = store
        self.models = ModelSet(settings)
        self.index = RecentUsers(store, settings.serving.online_store_poll_ms / 1000.0)
        self.warm = FoldInWarmer.for_settings(
            settings, store, lambda: self.models.snapshot, self.index, defer_seconds=0.0
        )
        assert self.warm.shared is not None
        self.shared = self.warm.shared
        self._beat_failing = False

    def run(self, stop: threading.Event, heartbeat: Path | None = None) -> FolderReport:
        """Fold in until `stop` is set; what was done. `heartbeat`: a file touched with every
        heartbeat written (for a container's health check)."""
        start = time.monotonic()
        self.models.start()
        self.index.start()
        self.warm.start()
        log.info("fold-in: following the online store; lists shared in %s", self.shared)
        pruned = reported = start
        try:
            while True:
                if self._beat() and heartbeat is not None:
                    heartbeat.touch()
                if stop.wait(HEARTBEAT_SECONDS):
                    break
                now = time.monotonic()
                if now - pruned >= PRUNE_SECONDS:
                    pruned = now
                    self._prune()
                if now - reported >= REPORT_SECONDS:
                    reported = now
                    log.info("fold-in: %s", self._report(start).summary())
        finally:
            self.warm.stop()
            self.index.stop()
            self.models.stop()
        report = self._report(start)
        self.store.close()
        self.shared.close()
        return report

    def _beat(self) -> bool:
        """Write the heartbeat; warns when it starts failing and says when it works again."""
        try:
            self.shared.beat()
        except OnlineStoreUnavailable as exc:
            if not self._beat_failing:
                log.warning("fold-in: the heartbeat cannot be written: %s", exc)
            self._beat_failing = True
            return False
        if self._beat_failing:
            log.info("fold-in: the heartbeat is written again")
        self._beat_failing = False
        return True

    def _prune(self) -> None:
        snap = self.models.snapshot
        served = {m.version for m in (snap.stable, snap.canary) if m is not None}
        if not served:
            return
        try:
            gone = self.shared.prune(served)
        except OnlineStoreUnavailable as exc:
            log.warning("fold-in: pruning the shared lists failed: %s", exc)
            return
        if gone:
            log.info("fold-in: forgot %d lists of versions no longer served", gone)

    def _report(self, start: float) -> FolderReport:
        done = self.warm.counts
        elapsed = time.monotonic() - start
        return FolderReport(done["computed"], done["shared"], done["failed"], elapsed)
