"""`models/routing.json`: what is served, changed atomically, with its history; sticky buckets.

`routing.json` says what is served: `{"stable", "canary", "canary_pct", "updated_at",
"reason"}` (docs/contracts.md), and, for the release stages, `"shadow"` (a candidate that
computes lists for a sample of stable's requests without serving them), `"shadow_pct"` (the
share of requests sampled, 0..100) and `"stage_started_at"` (when the current shadow or
canary stage began; `updated_at` is when its current step began). A file without the three
extra fields reads as no shadow. It is replaced atomically and every change is appended, with
the routing before and after, to `routing_history.jsonl`, under a lock so that two writers
never lose an update.

A candidate goes SHADOW (`set_shadow`) -> CANARY at a first percentage (`shadow_to_canary`) ->
higher percentages (`set_canary_pct`) -> stable (`promote_canary`); `abort_canary` ends a
shadow or a canary.

Sticky routing: a user is in the canary when a stable hash of (salt, user id) modulo 100 is
below `canary_pct` (blake2b, never Python's `hash()`, which differs between processes), so
raising the percentage only adds users to the canary.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from movierec.core.errors import DataValidationError, ModelLoadError
from movierec.core.files import append_lines, atomic_write_json, exclusive_lock, read_json
from movierec.core.schema import METADATA
from movierec.core.settings import Settings
from movierec.core.vocabulary import Arm, Stage
from movierec.registry.bundles import bundle_path
from movierec.registry.tracking import mirror_routing


@dataclass(frozen=True)
class Routing:
    stable: str
    canary: str | None
    canary_pct: int
    updated_at: str
    reason: str
    shadow: str | None = None
    shadow_pct: int = 0
    stage_started_at: str | None = None

    def __post_init__(self) -> None:
        if not self.stable:
            raise DataValidationError("routing: stable version is empty")
        if not isinstance(self.canary_pct, int) or not 0 <= self.canary_pct <= 100:
            raise DataValidationError(f"routing: canary_pct={self.canary_pct!r}, expected 0..100")
        if self.canary is None and self.canary_pct != 0:
            raise DataValidationError("routing: canary_pct > 0 without a canary")
        if self.canary is not None and self.canary == self.stable:
            raise DataValidationError(f"routing: canary {self.canary} is also the stable model")
        if not isinstance(self.shadow_pct, int) or not 0 <= self.shadow_pct <= 100:
            raise DataValidationError(f"routing: shadow_pct={self.shadow_pct!r}, expected 0..100")
        if self.shadow is None and self.shadow_pct != 0:
            raise DataValidationError("routing: shadow_pct > 0 without a shadow")
        if self.shadow is not None and self.shadow in (self.stable, self.canary):
            raise DataValidationError(f"routing: shadow {self.shadow} is also served")

    @property
    def stage(self) -> Stage:
        """CANARY while a canary is routed, SHADOW while only a shadow runs, else STABLE."""
        if self.canary is not None:
            return Stage.CANARY
        return Stage.SHADOW if self.shadow is not None else Stage.STABLE

    @property
    def candidate(self) -> str | None:
        """The version under evaluation: the canary, or the shadow."""
        return self.canary if self.canary is not None else self.shadow

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def read_routing(settings: Settings) -> Routing | None:
    raw = read_json_strict(settings.routing_file)
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise DataValidationError(f"{settings.routing_file}: expected a JSON object")
    try:
        return Routing(
            stable=raw["stable"],
            canary=raw.get("canary"),
            canary_pct=int(raw.get("canary_pct", 0)),
            updated_at=raw.get("updated_at", ""),
            reason=raw.get("reason", ""),
            shadow=raw.get("shadow"),
            shadow_pct=int(raw.get("shadow_pct", 0)),
            stage_started_at=raw.get("stage_started_at"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DataValidationError(f"{settings.routing_file}: invalid routing ({exc})") from None


def read_json_strict(path: Path) -> object:
    try:
        return read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataValidationError(f"{path}: not valid JSON ({exc})") from None


def _write_routing_locked(settings: Settings, routing: Routing) -> Routing:
    """Replace routing.json atomically and append the change to the history (lock held)."""
    bundle_path(settings, routing.stable)  # validates the name
    for v in (routing.stable, routing.canary, routing.shadow):
        if v is not None and not (bundle_path(settings, v) / METADATA).exists():
            raise ModelLoadError(f"cannot route to {v}: no such model in {settings.models_path}")
    before = read_routing(settings)
    atomic_write_json(settings.routing_file, routing.as_dict())
    append_lines(
        settings.routing_history_file,
        [
            json.dumps(
                {
                    "ts": routing.updated_at,
                    "before": before.as_dict() if before else None,
                    "after": routing.as_dict(),
                    "reason": routing.reason,
                },
                sort_keys=True,
            )
        ],
    )
    mirror_routing(settings, routing.stable, routing.canary)  # MLflow aliases, when configured
    return routing


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _update(settings: Settings, change: Callable[[Routing | None], Routing]) -> Routing:
    """Read-modify-write under the routing lock."""
    with exclusive_lock(settings.models_path / ".routing.lock", wait=True):
        new = change(read_routing(settings))
        return _write_routing_locked(settings, new)


def set_stable(settings: Settings, version: str, reason: str) -> Routing:
    """Serve `version` to everyone (no canary)."""
    return _update(settings, lambda _old: Routing(version, None, 0, _now(), reason))


def set_canary(settings: Settings, version: str, pct: int, reason: str) -> Routing:
    """Serve `version` to `pct`% of users, starting a canary stage (any shadow ends)."""

    def change(old: Routing | None) -> Routing:
        if old is None:
            raise ModelLoadError("no stable model is routed yet: set a stable model first")
        now = _now()
        return Routing(old.stable, version, pct, now, reason, stage_started_at=now)

    return _update(settings, change)


def set_shadow(settings: Settings, version: str, pct: int, reason: str) -> Routing:
    """Run `version` in shadow on `pct`% of requests (no canary, nobody served by it)."""

    def change(old: Routing | None) -> Routing:
        if old is None:
            raise ModelLoadError("no stable model is routed yet: set a stable model first")
        now = _now()
        return Routing(old.stable, None, 0, now, reason, version, pct, now)

    return _update(settings, change)


def shadow_to_canary(settings: Settings, pct: int, reason: str) -> Routing:
    """The shadow candidate becomes a canary at `pct`%: the canary stage begins."""

    def change(old: Routing | None) -> Routing:
        if old is None or old.shadow is None:
            raise ModelLoadError("no shadow candidate is routed")
        now = _now()
        return Routing(old.stable, old.shadow, pct, now, reason, stage_started_at=now)

    return _update(settings, change)


def set_canary_pct(settings: Settings, pct: int, reason: str) -> Routing:
    """The next step of the same canary stage."""

    def change(old: Routing | None) -> Routing:
        if old is None or old.canary is None:
            raise ModelLoadError("no canary is routed")
        return replace(old, canary_pct=pct, updated_at=_now(), reason=reason)

    return _update(settings, change)


def promote_canary(settings: Settings, reason: str) -> Routing:
    """The canary becomes stable; nobody is in a canary afterwards."""

    def change(old: Routing | None) -> Routing:
        if old is None or old.canary is None:
            raise ModelLoadError("no canary to promote")
        return Routing(old.canary, None, 0, _now(), reason)

    return _update(settings, change)


def promote_candidate(settings: Settings, reason: str) -> Routing:
    """The candidate under evaluation (the canary, or the shadow) becomes stable."""

    def change(old: Routing | None) -> Routing:
        if old is None or old.candidate is None:
            raise ModelLoadError("no canary or shadow candidate to promote")
        return Routing(old.candidate, None, 0, _now(), reason)

    return _update(settings, change)


def abort_canary(settings: Settings, reason: str) -> Routing:
    """Everyone back on stable, no shadow; the aborted candidate stays registered for audit."""

    def change(old: Routing | None) -> Routing:
        if old is None:
            raise ModelLoadError("no routing to abort")
        return Routing(old.stable, None, 0, _now(), reason)

    return _update(settings, change)


def routing_signature(settings: Settings) -> tuple[int, int, int] | None:
    """(mtime_ns, size, inode) of routing.json: cheap to compare, changes on every replace."""
    try:
        st = os.stat(settings.routing_file)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


@lru_cache(maxsize=65536)
def canary_bucket(user_id: int, salt: str) -> int:
    """0..99, stable across processes and machines."""
    digest = hashlib.blake2b(f"{salt}:{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100


def arm_for(user_id: int, routing: Routing, salt: str) -> Arm:
    if routing.canary is None or routing.canary_pct <= 0:
        return "stable"
    return "canary" if canary_bucket(user_id, salt) < routing.canary_pct else "stable"


def routed_versions(settings: Settings) -> set[str]:
    """Every version that was ever stable, canary or shadow (kept: a past request or shadow
    record may trace to it)."""
    seen: set[str] = set()
    path = settings.routing_history_file
    if not path.exists():
        return seen
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            for part in (entry, entry.get("after") or {}, entry.get("before") or {}):
                if isinstance(part, dict):
                    versions = (part.get("stable"), part.get("canary"), part.get("shadow"))
                    seen.update(v for v in versions if v)
    return seen
