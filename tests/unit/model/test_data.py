"""TrainingData: built from ratings or interactions, and capped to the latest rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from movierec.model.training.dataset import TrainingData
from tests.modelkit import block_movies, block_users


def _interactions() -> pd.DataFrame:
    t = pd.Timestamp("2025-01-01", tz="UTC")
    return pd.DataFrame(
        {
            "user_id": [1, 1, 2, 3],
            "movie_id": ["a+movie+0+2000", "a+movie+1+2000", "a+movie+0+2000", "b+movie+0+2000"],
            "minutes": np.array([10, 0, 3, 7], dtype=np.int32),
            "rating": np.array([4, 5, np.nan, 2], dtype=np.float32),
            "first_ts": [t, t, t, t],
            "last_ts": [t + pd.Timedelta(hours=h) for h in (3, 1, 4, 2)],
        }
    )


def test_ratings_are_the_rated_interactions_at_their_last_event() -> None:
    data = TrainingData.from_interactions(_interactions(), block_users(), block_movies())
    assert data.ratings["rating"].tolist() == [4, 5, 2]
    assert data.ratings["user_id"].tolist() == [1, 1, 3]
    assert data.ratings["timestamp"].tolist() == _interactions()["last_ts"][[0, 1, 3]].tolist()


def test_from_ratings_counts_every_rating_as_a_watch_without_minutes(
    block_ratings: pd.DataFrame,
) -> None:
    data = TrainingData.from_ratings(block_ratings, block_users(), block_movies())
    assert len(data.interactions) == len(block_ratings)
    assert (data.interactions["minutes"] == 0).all()
    assert data.interactions["rating"].tolist() == block_ratings["rating"].tolist()


def test_latest_keeps_the_most_recent_interactions() -> None:
    data = TrainingData.from_interactions(_interactions(), block_users(), block_movies())
    assert data.latest(10) is data
    capped = data.latest(2)
    assert sorted(capped.interactions["last_ts"].dt.hour.tolist()) == [3, 4]
    assert capped.ratings["rating"].tolist() == [4]  # the rated one of the two
