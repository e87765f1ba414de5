"""The models a worker serves: `ServingModel` (one bundle) and `ModelSet` (what routing says).

A bundle carries the lists the trainer precomputed for every user it knows
(`recommendations.parquet`: user_id, items as the comma-joined top-K) and a cold-start list
(`cold_start.json`). Loading verifies every file of the bundle against its recorded sha256;
answering is a dictionary lookup. Never training code.

`ModelSet` follows `models/routing.json` without a restart: a background thread compares the
file's cheap signature (mtime, size, inode) every `routing_check_seconds`; on a change it parses
the routing, loads any new version BESIDE the serving ones (hash-checked), and swaps in one
immutable `Snapshot` - a single reference assignment, atomic for the request threads, which
never stat, parse or lock anything.

A version that fails to load is refused: the previous stable keeps serving (a failed canary
means everyone is served by stable), `/readyz` lists the refusal with its reason, and
`movierec_model_load_failures_total` counts it. A `routing.json` that cannot be read (cut
short, not JSON, invalid) is refused the same way: the previous routing keeps serving,
`movierec_routing_refused_total` counts it, and the refusal is lifted by the next good file.
A served model whose bundle disappears from disk keeps serving from memory; the watcher
notices, `/readyz` reports it as degraded and `movierec_model_bundle_missing` is 1 (a
restarted worker could not load it: `deploy_app.py --docker` refuses to restart then).
"""

from __future__ import annotations

import ctypes
import json
import logging
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from movierec.core.errors import ModelLoadError, MovierecError
from movierec.core.schema import COLD_START, METADATA, RECOMMENDATIONS
from movierec.core.settings import Settings
from movierec.registry.bundles import bundle_path, verify_bundle
from movierec.registry.lists import PrecomputedLists
from movierec.registry.routing import Routing, read_routing, routing_signature
from movierec.serve.live.fold_in_cache import FoldInCache
from movierec.serve.metrics import (
    BUNDLE_MISSING,
    CANARY_PCT,
    LOAD_FAILURES,
    MODEL_INFO,
    ROUTING_REFUSED,
)

log = logging.getLogger(__name__)


@dataclass
class ServingModel:
    version: str
    metadata: dict[str, Any]
    lists: PrecomputedLists = field(repr=False)
    cold: str
    cutoff_ms: int = 0  # the training data's last event: later ones are folded in
    fold: FoldInCache | None = field(default=None, repr=False)

    @classmethod
    def load(cls, bundle_dir: Path, fold_in_cache: int = 10_000) -> ServingModel:
        """Verify the bundle's hashes, then map its lists (and its model, for fold-in)."""
        meta = verify_bundle(bundle_dir)
        try:
            lists = _lists(bundle_dir)
            cold_items = json.loads((bundle_dir / COLD_START).read_text())["items"]
            cutoff = meta.get("training_cutoff")
            cutoff_ms = int(datetime.fromisoformat(cutoff).timestamp() * 1000) if cutoff else 0
        except (OSError, KeyError, ValueError) as exc:
            raise ModelLoadError(f"{bundle_dir}: unreadable serving artifacts ({exc})") from None
        if not cold_items:
            raise ModelLoadError(f"{bundle_dir}: empty cold-start list")
        model = cls(
            version=str(meta["version"]),
            metadata=meta,
            lists=lists,
            cold=",".join(cold_items),
            cutoff_ms=cutoff_ms,
            fold=FoldInCache.load(bundle_dir, fold_in_cache),
        )
        release_freed_heap()
        return model

    def recommend(self, user_id: int) -> str:
        """Comma-joined movie ids, best first; the cold-start list for an unknown user."""
        items = self.lists.get(user_id)
        return self.cold if items is None else ",".join(items)

    def recommend_live(self, user_id: int, recent: list[str], k: int) -> tuple[str, str]:
        """The list of a user with `recent` movies since the cutoff, and how it was made:
        folded in from the model, or (a bundle of lists only) the precomputed list without
        them."""
        if self.fold is not None:
            return ",".join(self.fold.recommend(user_id, recent, k)), "fold_in"
        watched = set(recent)
        items = self.lists.get(user_id) or self.cold.split(",")
        return ",".join(m for m in items if m not in watched), "filtered"

    def is_cold(self, user_id: int) -> bool:
        return self.lists.row(user_id) < 0

    @property
    def known_users(self) -> int:
        return len(self.lists)


def release_freed_heap() -> bool:
    """Give the C heap's freed memory back to the system (glibc's `malloc_trim`). XGBoost
    parses a booster's JSON into a large temporary document that glibc keeps once freed: about
    95 MB in every worker for ml-1m's 10 MB rating model. False without glibc."""
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def _lists(bundle_dir: Path) -> PrecomputedLists:
    """Memory-mapped when the bundle has the arrays; built from the table otherwise (bundles
    made before them)."""
    if PrecomputedLists.saved_in(bundle_dir):
        return PrecomputedLists.load(bundle_dir, mmap=True)
    table = pq.read_table(bundle_dir / RECOMMENDATIONS, columns=["user_id", "items"])
    users = table.column("user_id").to_pylist()
    items = table.column("items").to_pylist()
    return PrecomputedLists.build(
        {int(u): (v.split(",") if v else []) for u, v in zip(users, items, strict=True)}
    )


@dataclass(frozen=True)
class Snapshot:
    """What is served right now (never mutated: replaced whole)."""

    routing: Routing | None
    stable: ServingModel | None
    canary: ServingModel | None
    refused: dict[str, str] = field(default_factory=dict)
    shadow: ServingModel | None = None  # computes lists off the request path, never served

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
        self._published: set[tuple[str, str]] = set()  # (arm, version) of MODEL_INFO at 1
        self.missing: dict[str, str] = {}  # served version -> its bundle folder, gone from disk
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
        while not self._stop.wait(self.settings.serving.routing_check_seconds):
            try:
                self.refresh()
                self.check_bundles()
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
                ROUTING_REFUSED.inc()
                self._refused["routing.json"] = str(exc)
                self.snapshot = replace(self.snapshot, refused=dict(self._refused))
                return False
            self._refused.pop("routing.json", None)
            self.snapshot = self._build(routing)
            self._publish()
            return True

    def check_bundles(self) -> dict[str, str]:
        """Served versions whose bundle is gone from disk (they serve on from memory)."""
        snap = self.snapshot
        missing: dict[str, str] = {}
        for model in (snap.stable, snap.canary):
            if model is not None:
                folder = bundle_path(self.settings, model.version)
                if not (folder / METADATA).exists():
                    missing[model.version] = str(folder)
        if missing != self.missing:
            for version, gone in missing.items():
                log.error(
                    "bundle of served model %s is gone (%s): serving from memory", version, gone
                )
            BUNDLE_MISSING.set(len(missing))
            self.missing = missing
        return missing

    def _load(self, version: str) -> ServingModel | None:
        if version in self._cache:
            return self._cache[version]
        if version in self._refused:
            return None
        try:
            model = ServingModel.load(
                bundle_path(self.settings, version), self.settings.serving.fold_in_cache_users
            )
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
            return replace(old, routing=None, refused=dict(self._refused))
        stable = self._load(routing.stable)
        effective = routing
        if stable is None:  # keep serving the previous stable
            stable = old.stable
            if old.routing is not None:
                effective = replace(routing, stable=old.routing.stable)
        canary = self._load(routing.canary) if routing.canary else None
        if routing.canary and canary is None:
            effective = replace(effective, canary=None, canary_pct=0)
        shadow = self._load(routing.shadow) if routing.shadow else None
        if routing.shadow and shadow is None:
            effective = replace(effective, shadow=None, shadow_pct=0)
        keep = {m.version for m in (stable, canary, shadow) if m is not None}
        self._cache = {v: m for v, m in self._cache.items() if v in keep}
        return Snapshot(effective, stable, canary, dict(self._refused), shadow)

    def _publish(self) -> None:
        snap = self.snapshot
        CANARY_PCT.set(snap.canary_pct)
        # a series no longer served goes to 0, not away: prometheus_client cannot remove labels
        # in multiprocess mode (`clear()` only warns there, and the old series stayed at 1)
        served = {
            (arm, model.version)
            for arm, model in (("stable", snap.stable), ("canary", snap.canary))
            if model is not None
        }
        for arm, version in self._published - served:
            MODEL_INFO.labels(arm=arm, model_version=version).set(0)
        for arm, version in served:
            MODEL_INFO.labels(arm=arm, model_version=version).set(1)
        self._published = served
