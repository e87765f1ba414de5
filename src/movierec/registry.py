"""The model registry: versioned, hashed bundles under `models/`, and `routing.json`.

A bundle is `models/<version>/` holding its artifact files and `metadata.json` (version,
creation time, git commit/branch/dirty, library versions, what the trainer passed, and the
sha256 and size of every artifact). It is written into `models/.tmp-<version>-<random>/` and
renamed into place when complete, so a crash never leaves a visible partial bundle.
`verify_bundle` re-hashes every file: a tampered, missing or extra file is refused.

`routing.json` says what is served: `{"stable", "canary", "canary_pct", "updated_at",
"reason"}`. It is replaced atomically and every change is appended, with the routing before
and after, to `routing_history.jsonl`, under a lock so that two writers never lose an update.

Sticky routing: a user is in the canary when a stable hash of (salt, user id) modulo 100 is
below `canary_pct` (blake2b, never Python's `hash()`, which differs between processes), so
raising the percentage only adds users to the canary.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import lru_cache
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from movierec.config import Settings
from movierec.errors import DataValidationError, ModelLoadError
from movierec.fsutil import (
    append_lines,
    atomic_write_json,
    exclusive_lock,
    fsync_dir,
    read_json,
    sha256_file,
)
from movierec.gitinfo import git_info

METADATA = "metadata.json"
_LIBRARIES = ("numpy", "pandas", "pyarrow", "scipy", "scikit-learn", "xgboost-cpu", "implicit")


def new_version(now: datetime | None = None, commit: str | None = None) -> str:
    """`v20251202T173325Z-d14d5332`: UTC time and short commit."""
    now = now or datetime.now(UTC)
    commit = commit or git_info().commit
    short = commit[:8] if commit and commit != "unknown" else "nogit000"
    return f"v{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{short}"


def bundle_path(settings: Settings, version: str) -> Path:
    if not version or "/" in version or version.startswith("."):
        raise ModelLoadError(f"bad model version {version!r}")
    return settings.models_path / version


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for lib in _LIBRARIES:
        try:
            out[lib] = importlib_metadata.version(lib)
        except importlib_metadata.PackageNotFoundError:
            continue
    return out


def save_bundle(
    settings: Settings,
    version: str,
    files: Mapping[str, bytes | Path],
    metadata: Mapping[str, Any],
) -> Path:
    """Write a complete bundle atomically; returns its folder. Refuses an existing version."""
    target = bundle_path(settings, version)
    if target.exists():
        raise ModelLoadError(f"model version {version} already exists at {target}")
    settings.models_path.mkdir(parents=True, exist_ok=True)
    tmp = settings.models_path / f".tmp-{version}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        artifacts: dict[str, dict[str, Any]] = {}
        for name, content in files.items():
            if "/" in name or name == METADATA or name.startswith("."):
                raise ModelLoadError(f"bad artifact name {name!r}")
            dest = tmp / name
            if isinstance(content, Path):
                shutil.copyfile(content, dest)
            else:
                dest.write_bytes(content)
            with open(dest, "rb") as f:
                os.fsync(f.fileno())
            artifacts[name] = {"sha256": sha256_file(dest), "bytes": dest.stat().st_size}
        git = git_info()
        meta = dict(metadata)
        meta.update(
            {
                "version": version,
                "created_at": meta.get("created_at") or datetime.now(UTC).isoformat(),
                "git_commit": git.commit,
                "git_branch": git.branch,
                "git_dirty": git.dirty,
                "library_versions": library_versions(),
                "artifacts": artifacts,
            }
        )
        atomic_write_json(tmp / METADATA, meta)
        fsync_dir(tmp)
        os.rename(tmp, target)
        fsync_dir(settings.models_path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def verify_bundle(path: Path) -> dict[str, Any]:
    """The bundle's metadata, after checking every artifact against its recorded sha256."""
    meta_file = path / METADATA
    try:
        meta = json.loads(meta_file.read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: no {METADATA} (not a model bundle)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{meta_file}: corrupt metadata ({exc})") from None
    artifacts = meta.get("artifacts")
    if not isinstance(artifacts, dict):
        raise ModelLoadError(f"{meta_file}: no artifact list")
    present = {p.name for p in path.iterdir() if p.name != METADATA}
    extra = present - set(artifacts)
    if extra:
        raise ModelLoadError(f"{path}: files not in its metadata: {sorted(extra)}")
    for name, info in artifacts.items():
        f = path / name
        if not f.exists():
            raise ModelLoadError(f"{path}: artifact {name} is missing")
        digest = sha256_file(f)
        if digest != info.get("sha256"):
            raise ModelLoadError(
                f"{path}: artifact {name} has sha256 {digest[:12]}..., "
                f"metadata says {str(info.get('sha256'))[:12]}... (tampered or corrupt)"
            )
    return dict(meta)


def load_metadata(settings: Settings, version: str) -> dict[str, Any]:
    """Metadata without re-hashing (for listings and comparisons)."""
    path = bundle_path(settings, version) / METADATA
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ModelLoadError(
            f"model version {version} not found in {settings.models_path}"
        ) from None
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path}: corrupt metadata ({exc})") from None


def list_versions(settings: Settings) -> list[str]:
    """Complete bundles, oldest first (versions sort by their UTC time)."""
    if not settings.models_path.exists():
        return []
    return sorted(
        p.name
        for p in settings.models_path.iterdir()
        if p.is_dir() and p.name.startswith("v") and (p / METADATA).exists()
    )


def delete_bundle(settings: Settings, version: str) -> None:
    shutil.rmtree(bundle_path(settings, version), ignore_errors=True)


def cleanup_partial_bundles(settings: Settings) -> list[str]:
    """Remove `.tmp-*` folders left by a crashed writer."""
    removed = []
    if settings.models_path.exists():
        for p in settings.models_path.glob(".tmp-*"):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p.name)
    return removed


# ---- routing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Routing:
    stable: str
    canary: str | None
    canary_pct: int
    updated_at: str
    reason: str

    def __post_init__(self) -> None:
        if not self.stable:
            raise DataValidationError("routing: stable version is empty")
        if not isinstance(self.canary_pct, int) or not 0 <= self.canary_pct <= 100:
            raise DataValidationError(f"routing: canary_pct={self.canary_pct!r}, expected 0..100")
        if self.canary is None and self.canary_pct != 0:
            raise DataValidationError("routing: canary_pct > 0 without a canary")
        if self.canary is not None and self.canary == self.stable:
            raise DataValidationError(f"routing: canary {self.canary} is also the stable model")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_routing(settings: Settings) -> Routing | None:
    raw = read_json_strict(settings.routing_file)
    if raw is None:
        return None
    try:
        return Routing(
            stable=raw["stable"],
            canary=raw.get("canary"),
            canary_pct=int(raw.get("canary_pct", 0)),
            updated_at=raw.get("updated_at", ""),
            reason=raw.get("reason", ""),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DataValidationError(f"{settings.routing_file}: invalid routing ({exc})") from None


def read_json_strict(path: Path) -> Any:
    try:
        return read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataValidationError(f"{path}: not valid JSON ({exc})") from None


def write_routing(settings: Settings, routing: Routing) -> Routing:
    """Replace routing.json atomically and append the change to the history."""
    with exclusive_lock(settings.models_path / ".routing.lock", wait=True):
        return _write_routing_locked(settings, routing)


def _write_routing_locked(settings: Settings, routing: Routing) -> Routing:
    bundle_path(settings, routing.stable)  # validates the name
    for v in (routing.stable, routing.canary):
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
    return routing


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _update(settings: Settings, change: Any) -> Routing:
    """Read-modify-write under the routing lock."""
    with exclusive_lock(settings.models_path / ".routing.lock", wait=True):
        new = change(read_routing(settings))
        return _write_routing_locked(settings, new)


def set_stable(settings: Settings, version: str, reason: str) -> Routing:
    """Serve `version` to everyone (no canary)."""
    return _update(settings, lambda _old: Routing(version, None, 0, _now(), reason))


def set_canary(settings: Settings, version: str, pct: int, reason: str) -> Routing:
    def change(old: Routing | None) -> Routing:
        if old is None:
            raise ModelLoadError("no stable model is routed yet: set a stable model first")
        return Routing(old.stable, version, pct, _now(), reason)

    return _update(settings, change)


def set_canary_pct(settings: Settings, pct: int, reason: str) -> Routing:
    def change(old: Routing | None) -> Routing:
        if old is None or old.canary is None:
            raise ModelLoadError("no canary is routed")
        return Routing(old.stable, old.canary, pct, _now(), reason)

    return _update(settings, change)


def promote_canary(settings: Settings, reason: str) -> Routing:
    """The canary becomes stable; nobody is in a canary afterwards."""

    def change(old: Routing | None) -> Routing:
        if old is None or old.canary is None:
            raise ModelLoadError("no canary to promote")
        return Routing(old.canary, None, 0, _now(), reason)

    return _update(settings, change)


def abort_canary(settings: Settings, reason: str) -> Routing:
    """Everyone back on stable; the aborted canary stays registered for audit."""

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


def arm_for(user_id: int, routing: Routing, salt: str) -> str:
    if routing.canary is None or routing.canary_pct <= 0:
        return "stable"
    return "canary" if canary_bucket(user_id, salt) < routing.canary_pct else "stable"
