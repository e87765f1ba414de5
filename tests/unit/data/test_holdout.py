"""The fixed holdout: each user's latest ratings, never in training, never rewritten."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from movierec.core.errors import DataValidationError, HoldoutChangedError
from movierec.core.settings import Settings
from movierec.data.holdout import create_holdout, holdout_sha256, load_holdout
from movierec.data.splits import exclude_pairs


def _ratings(n_users: int = 30, per_user: int = 20) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = [
        (
            u,
            f"m+{j}+1999",
            int(rng.integers(1, 6)),
            pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(hours=u * 100 + j),
        )
        for u in range(n_users)
        for j in rng.choice(60, size=per_user, replace=False)
    ]
    return pd.DataFrame(rows, columns=["user_id", "movie_id", "rating", "timestamp"])


def _pairs(frame: pd.DataFrame) -> set[tuple[int, str]]:
    return set(zip(frame["user_id"], frame["movie_id"], strict=True))


def test_the_holdout_is_each_users_latest_ratings_and_never_reaches_training(
    settings: Settings,
) -> None:
    ratings = _ratings()
    create_holdout(settings, ratings)
    holdout = load_holdout(settings)
    assert len(holdout) == 30 * 2  # 10% of 20 ratings per user
    latest = ratings.sort_values("timestamp").groupby("user_id").tail(2)
    assert _pairs(holdout) == _pairs(latest)
    train = exclude_pairs(ratings, holdout)
    assert len(train) == len(ratings) - len(holdout)
    assert not _pairs(train) & _pairs(holdout)


def test_the_holdout_is_never_rewritten_and_a_changed_one_is_refused(settings: Settings) -> None:
    ratings = _ratings()
    digest = create_holdout(settings, ratings)
    assert holdout_sha256(settings) == digest
    with pytest.raises(DataValidationError, match="never rewritten"):
        create_holdout(settings, ratings)
    changed = load_holdout(settings).iloc[1:]
    changed.to_parquet(settings.holdout_file, index=False)
    with pytest.raises(HoldoutChangedError, match="was changed"):
        load_holdout(settings)
