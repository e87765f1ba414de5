"""Versioned, hashed model bundles under `models/`.

A bundle is `models/<version>/` holding its artifact files and `metadata.json` (version,
creation time, git commit/branch/dirty, library versions, what the trainer passed, and the
sha256 and size of every artifact). It is written into `models/.tmp-<version>-<random>/` and
renamed into place when complete, so a crash never leaves a visible partial bundle.
`verify_bundle` re-hashes every file: a tampered, missing or extra file is refused.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, TypedDict

from movierec.core.errors import ModelLoadError
from movierec.core.files import (
    atomic_write_json,
    fsync_dir,
    sha256_file,
)
from movierec.core.gitinfo import git_info
from movierec.core.schema import METADATA
from movierec.core.settings import Settings


class Artifact(TypedDict):
    sha256: str
    bytes: int


class BundleMetadata(TypedDict, total=False):
    """`metadata.json`: what the registry writes (the first block) and what the trainer
    passed (the rest; `retrain.training`); models of earlier versions may lack some keys."""

    version: str
    created_at: str
    git_commit: str
    git_branch: str
    git_dirty: bool
    library_versions: dict[str, str]
    artifacts: dict[str, Artifact]
    # the trainer's
    training_data_id: str
    holdout_sha256: str
    params: dict[str, object]
    fit_info: dict[str, object]
    feature_names: list[str]
    metrics: dict[str, object]  # offline metrics on the holdout: numbers and groups of them
    serving: dict[str, int]  # k, users with a precomputed list
    training_cutoff: str | None  # the last event trained on: the service folds in what follows
    data_counts: dict[str, int]
    training_rows: int
    tuning: dict[str, object]
    variant_of: str  # the rank-by-rating variant's base version


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
    metadata: BundleMetadata,
) -> Path:
    """Write a complete bundle atomically; returns its folder. Refuses an existing version."""
    target = bundle_path(settings, version)
    if target.exists():
        raise ModelLoadError(f"model version {version} already exists at {target}")
    settings.models_path.mkdir(parents=True, exist_ok=True)
    tmp = settings.models_path / f".tmp-{version}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        artifacts: dict[str, Artifact] = {}
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
        meta: BundleMetadata = {
            **metadata,
            "version": version,
            "created_at": metadata.get("created_at") or datetime.now(UTC).isoformat(),
            "git_commit": git.commit,
            "git_branch": git.branch,
            "git_dirty": git.dirty,
            "library_versions": library_versions(),
            "artifacts": artifacts,
        }
        atomic_write_json(tmp / METADATA, meta)
        fsync_dir(tmp)
        os.rename(tmp, target)
        fsync_dir(settings.models_path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def verify_bundle(path: Path) -> dict[str, Any]:
    """The bundle's metadata (keys: `BundleMetadata`; a plain dict, as the service keeps it),
    after checking every artifact against its recorded sha256."""
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


def load_metadata(settings: Settings, version: str) -> BundleMetadata:
    """Metadata without re-hashing (for listings and comparisons)."""
    path = bundle_path(settings, version) / METADATA
    try:
        return _metadata(json.loads(path.read_text()), path)
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


def _metadata(raw: object, path: Path) -> BundleMetadata:
    """The parsed metadata.json, once it is an object (its keys are the trainer's to read)."""
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{path}: corrupt metadata (not a JSON object)")
    meta: BundleMetadata = raw  # type: ignore[assignment]  # a TypedDict's keys are not checked
    return meta
