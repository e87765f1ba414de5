"""What code produced an artifact: git commit, branch and whether the tree was dirty."""

from __future__ import annotations

import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class GitInfo:
    commit: str
    branch: str
    dirty: bool

    @property
    def short(self) -> str:
        return self.commit[:8]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_info(cwd: Path | str | None = None) -> GitInfo:
    """Read git metadata; CI variables (CI_COMMIT_SHA, CI_COMMIT_REF_NAME) fill in when git
    is absent, as inside a container image; "unknown" when neither is there."""
    where = Path(cwd) if cwd else Path(__file__).resolve().parent
    commit = _git(["rev-parse", "HEAD"], where) or os.environ.get("CI_COMMIT_SHA") or "unknown"
    branch = (
        _git(["rev-parse", "--abbrev-ref", "HEAD"], where)
        or os.environ.get("CI_COMMIT_REF_NAME")
        or "unknown"
    )
    status = _git(["status", "--porcelain", "--untracked-files=no"], where)
    dirty = bool(status) if status is not None else os.environ.get("MOVIEREC_GIT_DIRTY") == "1"
    return GitInfo(commit=commit, branch=branch, dirty=dirty)
