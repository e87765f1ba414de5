"""The fixed holdout `data/offline_eval_data.parquet`: created once, never rewritten, checked.

Protocol: when it is created, from the ratings in the lake, every user with at least
`MIN_RATINGS` ratings gives their latest 10% (`holdout_fraction`, at least one). Its sha256 is
recorded beside it (`offline_eval_data.sha256`) and checked before every use; a changed file
is refused (`HoldoutChangedError`). Its (user, movie) pairs are removed from everything a
model trains on (`data.splits.exclude_pairs`) - ratings and watched interactions alike, since
watching a movie reveals it - so metrics of different versions, all measured on it, are
comparable.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from movierec.core.errors import DataNotFoundError, DataValidationError, HoldoutChangedError
from movierec.core.files import atomic_write_text, fsync_dir, sha256_file
from movierec.core.schema import RATING_COLUMNS
from movierec.core.settings import Settings
from movierec.data.splits import latest_per_user

log = logging.getLogger(__name__)

MIN_RATINGS = 10


def _hash_file(settings: Settings) -> Path:
    return settings.holdout_file.with_suffix(".sha256")


def select_holdout(ratings: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """Each eligible user's latest `fraction` of ratings."""
    _earlier, later = latest_per_user(ratings, fraction, MIN_RATINGS, "timestamp")
    return later[list(RATING_COLUMNS)].reset_index(drop=True)


def create_holdout(settings: Settings, ratings: pd.DataFrame) -> str:
    """Write the holdout once; refuses to overwrite. Returns its sha256."""
    path = settings.holdout_file
    if path.exists():
        raise DataValidationError(f"{path} exists: the holdout is created once, never rewritten")
    holdout = select_holdout(ratings, settings.training.holdout_fraction)
    if holdout.empty:
        raise DataNotFoundError(
            f"no user has {MIN_RATINGS} ratings yet: ingest more data before the first training"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    holdout.to_parquet(tmp, index=False)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    digest = sha256_file(tmp)
    atomic_write_text(_hash_file(settings), digest + "\n")
    os.link(tmp, path)  # fails if a concurrent run created it first
    os.unlink(tmp)
    fsync_dir(path.parent)
    log.info("created the holdout: %d ratings of %d users", len(holdout), holdout.user_id.nunique())
    return digest


def holdout_sha256(settings: Settings) -> str:
    """The recorded hash, after checking that the file still has it."""
    path = settings.holdout_file
    if not path.exists():
        raise DataNotFoundError(f"{path} does not exist: `movierec train` creates it")
    try:
        recorded = _hash_file(settings).read_text().strip()
    except FileNotFoundError:
        raise HoldoutChangedError(
            f"{_hash_file(settings)} is missing: cannot check {path}"
        ) from None
    actual = sha256_file(path)
    if actual != recorded:
        raise HoldoutChangedError(
            f"{path} has sha256 {actual[:12]}..., recorded {recorded[:12]}...: the fixed holdout "
            "was changed; metrics would not be comparable"
        )
    return recorded


def load_holdout(settings: Settings) -> pd.DataFrame:
    holdout_sha256(settings)
    return pd.read_parquet(settings.holdout_file)


def ensure_holdout(settings: Settings, ratings: pd.DataFrame) -> pd.DataFrame:
    if not settings.holdout_file.exists():
        create_holdout(settings, ratings)
    return load_holdout(settings)
