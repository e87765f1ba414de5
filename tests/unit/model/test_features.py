"""Pair features: shrunk means and genre statistics computed by hand, and unknown sides as
NaN, never another user's or movie's values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from movierec.model.cf import Index, Pairs
from movierec.model.features import (
    GENRE_SHRINK,
    MEAN_SHRINK,
    FeatureBase,
    build_base,
    occupations,
    pair_features,
)
from movierec.model.training.dataset import TrainingData


def _tiny() -> tuple[Index, FeatureBase]:
    t = pd.Timestamp("2025-01-01", tz="UTC")
    ratings = pd.DataFrame(
        {
            "user_id": [1, 1, 2],
            "movie_id": ["m1", "m2", "m1"],
            "rating": [5, 3, 1],
            "timestamp": [t, t + pd.Timedelta(days=2), t + pd.Timedelta(days=4)],
        }
    )
    users = pd.DataFrame(
        {"user_id": [1, 2], "age": [30, 50], "gender": ["F", "M"], "occupation": ["x", "y"]}
    )
    movies = pd.DataFrame(
        {"movie_id": ["m1", "m2"], "year": [1990, 2000], "genres": [["Drama"], ["Comedy", "Drama"]]}
    )
    data = TrainingData.from_ratings(ratings, users, movies)
    index = Index.build(np.array([1, 2]), movies["movie_id"].to_numpy())
    base = build_base(index, data.ratings, data.interactions, users, movies, occupations(users))
    return index, base


def test_user_and_movie_means_are_shrunk_towards_the_global_mean() -> None:
    _index, base = _tiny()
    mu = 3.0  # (5 + 3 + 1) / 3
    assert base.mu == pytest.approx(mu)
    u_count, u_mean = base.user_stats[0, :2]
    assert u_count == 2 and u_mean == pytest.approx((5 + 3 + MEAN_SHRINK * mu) / (2 + MEAN_SHRINK))
    i_count, i_mean = base.item_stats[0, :2]
    assert i_count == 2 and i_mean == pytest.approx((5 + 1 + MEAN_SHRINK * mu) / (2 + MEAN_SHRINK))
    assert base.item_year[1] == 2000
    assert base.user_stats[:, 3].tolist() == [4.0, 0.0]  # days since the user's first event


def test_genre_affinity_and_rating_deviation_by_hand() -> None:
    _index, base = _tiny()
    assert base.genres == ["Comedy", "Drama"]
    # user 1 watched m1 (Drama) and m2 (Comedy, Drama): 1 of 3 genre slots is Comedy
    np.testing.assert_allclose(base.user_genre_share[0], [1 / 3, 2 / 3], rtol=1e-6)
    X, names = pair_features(base, Pairs.rows(np.array([0]), np.array([1])), {})
    row = dict(zip(names, X[0], strict=True))
    assert row["genre_affinity"] == pytest.approx(1 / 3 + 2 / 3)
    # deviations from mu = 3: Comedy +0 (the 3), Drama +2 (the 5) + 0 (the 3)
    dev = [0 / (1 + GENRE_SHRINK), 2 / (2 + GENRE_SHRINK)]
    assert row["genre_rating_dev"] == pytest.approx(sum(dev) / 2)
    assert (row["female"], row["age"], row["g_Comedy"]) == (1.0, 30.0, 1.0)


def test_an_unknown_user_gets_nan_user_features_and_the_movies_own_values() -> None:
    _index, base = _tiny()
    pairs = Pairs.rows(np.array([-1, 1]), np.array([0, 0]))
    X, names = pair_features(base, pairs, {"x": np.array([7, 8])})
    unknown, known = (dict(zip(names, row, strict=True)) for row in X)
    for col in (*FeatureBase.USER_COLS, "age", "female", "genre_affinity", "genre_rating_dev"):
        assert np.isnan(unknown[col]), col
        assert not np.isnan(known[col]), col
    for col in FeatureBase.ITEM_COLS:
        assert unknown[col] == known[col]
    assert (unknown["x"], known["x"]) == (7, 8)
