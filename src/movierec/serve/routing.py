"""The models a worker serves, following `models/routing.json` without a restart.

A background thread compares the file's cheap signature (mtime, size, inode) every
`routing_check_seconds`; on a change it parses the routing, loads any new version BESIDE the
serving ones (hash-checked), and swaps in one immutable `Snapshot` - a single reference
assignment, atomic for the request threads, which never stat, parse or lock anything.

A version that fails to load is refused: the previous stable keeps serving (a failed canary
means everyone is served by stable), `/readyz` lists the refusal with its reason, and
`movierec_model_load_failures_total` counts it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from movierec.config import Settings
from movierec.errors import ModelLoadError, MovierecError
from movierec.model import ServingModel
from movierec.registry import Routing, bundle_path, read_routing, routing_signature
from movierec.serve.metrics import CANARY_PCT, LOAD_FAILURES, MODEL_INFO

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """What is served right now (never mutated: replaced whole)."""

    routing: Routing | None
    stable: ServingModel | None
    canary: ServingModel | None
    refused: dict[str, str] = field(default_factory=dict)

    @property
    def canary_pct(self) -> int:
        return self.routing.canary_pct if self.routing and self.canary else 0


class ModelSet:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.snapshot = Snapshot(None, None, None)
        self._signature: tuple[int, int, int] | None = None
        self._cache: dict[str, ServingModel] = {}
        self._refused: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Load now, then watch in the background."""
        self.refresh()
        self._thread = threading.Thread(target=self._watch, name="routing-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self.settings.routing_check_seconds):
            try:
                self.refresh()
            except Exception:  # the watcher must survive anything; the old snapshot serves
                log.exception("routing refresh failed; still serving the previous models")

    def refresh(self) -> bool:
        """Re-read the routing if its file changed. True when a new snapshot was installed."""
        with self._lock:
            sig = routing_signature(self.settings)
            if sig == self._signature:
                return False
            self._signature = sig
            try:
                routing = read_routing(self.settings)
            except MovierecError as exc:
                log.error("unreadable routing.json, keeping the current models: %s", exc)
                self._refused["routing.json"] = str(exc)
                self.snapshot = Snapshot(
                    self.snapshot.routing,
                    self.snapshot.stable,
                    self.snapshot.canary,
                    dict(self._refused),
                )
                return False
            self.snapshot = self._build(routing)
            self._publish()
            return True

    def _load(self, version: str) -> ServingModel | None:
        if version in self._cache:
            return self._cache[version]
        if version in self._refused:
            return None
        try:
            model = ServingModel.load(bundle_path(self.settings, version))
        except ModelLoadError as exc:
            self._refused[version] = str(exc)
            LOAD_FAILURES.labels(model_version=version).inc()
            log.error("refused model %s: %s", version, exc)
            return None
        log.info("loaded model %s (%d users)", version, model.known_users)
        self._cache[version] = model
        return model

    def _build(self, routing: Routing | None) -> Snapshot:
        old = self.snapshot
        if routing is None:
            return Snapshot(None, old.stable, old.canary, dict(self._refused))
        stable = self._load(routing.stable)
        effective = routing
        if stable is None:  # keep serving the previous stable
            stable = old.stable
            if old.routing is not None:
                effective = Routing(
                    old.routing.stable,
                    routing.canary,
                    routing.canary_pct,
                    routing.updated_at,
                    routing.reason,
                )
        canary = self._load(routing.canary) if routing.canary else None
        if routing.canary and canary is None:
            effective = Routing(effective.stable, None, 0, routing.updated_at, routing.reason)
        keep = {m.version for m in (stable, canary) if m is not None}
        self._cache = {v: m for v, m in self._cache.items() if v in keep}
        return Snapshot(effective, stable, canary, dict(self._refused))

    def _publish(self) -> None:
        snap = self.snapshot
        CANARY_PCT.set(snap.canary_pct)
        MODEL_INFO.clear()
        for arm, model in (("stable", snap.stable), ("canary", snap.canary)):
            if model is not None:
                MODEL_INFO.labels(arm=arm, model_version=model.version).set(1)
