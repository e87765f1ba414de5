"""The model: a known answer on a block dataset, determinism, and the fixed holdout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from movierec.core.errors import DataValidationError, HoldoutChangedError
from movierec.core.settings import Settings
from movierec.data.holdout import create_holdout, exclude_holdout, holdout_sha256, load_holdout
from movierec.model.recommender import TrainedModel, TrainingData, fit, rerank

FAST = {"candidates": 20, "oof_folds": 2}


def _block_data(ratings: pd.DataFrame) -> TrainingData:
    users = pd.DataFrame(
        {
            "user_id": np.arange(20),
            "age": np.where(np.arange(20) % 2 == 0, 25, 45),
            "gender": np.where(np.arange(20) % 3 == 0, "F", "M"),
            "occupation": "other",
        }
    )
    movies = pd.DataFrame(
        {
            "movie_id": [f"{b}+movie+{j}+2000" for b in "ab" for j in range(10)],
            "title": [f"{b} movie {j}" for b in "ab" for j in range(10)],
            "year": 2000,
            "genres": [["Drama"] if b == "a" else ["Comedy"] for b in "ab" for j in range(10)],
        }
    )
    return TrainingData.from_ratings(ratings, users, movies)


def test_block_users_get_their_own_blocks_unseen_movies_first(
    settings: Settings, block_ratings: pd.DataFrame
) -> None:
    model = fit(_block_data(block_ratings), settings, params=FAST)
    lists = model.recommend(np.arange(20), k=4)
    for u in range(20):
        own = "a" if u < 10 else "b"
        seen = set(block_ratings.loc[block_ratings.user_id == u, "movie_id"])
        expected = {f"{own}+movie+{j}+2000" for j in range(10)} - seen
        assert set(lists[u]) == expected, (u, lists[u])
        assert not seen & set(model.recommend([u], k=12)[u])  # never a watched movie


def test_the_same_seed_gives_the_same_model(
    settings: Settings, block_ratings: pd.DataFrame
) -> None:
    data = _block_data(block_ratings)
    s = settings.replace(tune_iterations=2, tune_seconds=30.0)
    a, b = fit(data, s), fit(data, s)
    assert a.params == b.params
    u, m = block_ratings["user_id"], block_ratings["movie_id"]
    np.testing.assert_array_equal(a.predict_ratings(u, m), b.predict_ratings(u, m))
    assert a.recommend(np.arange(20), 8) == b.recommend(np.arange(20), 8)


def test_a_saved_model_loads_back_identical(
    settings: Settings, block_ratings: pd.DataFrame
) -> None:
    model = fit(_block_data(block_ratings), settings, params=FAST)
    folder = settings.home / "bundle"
    folder.mkdir()
    model.save(folder)
    again = TrainedModel.load(folder)
    u, m = block_ratings["user_id"], block_ratings["movie_id"]
    np.testing.assert_allclose(again.predict_ratings(u, m), model.predict_ratings(u, m))
    assert again.recommend(np.arange(20), 4) == model.recommend(np.arange(20), 4)


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
    train = exclude_holdout(ratings, holdout)
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


def test_reranking_keeps_the_order_when_off_and_enforces_long_tail_and_diversity() -> None:
    rng = np.random.default_rng(3)
    scores = np.sort(rng.random(40))[::-1].copy()
    tail = np.zeros(40, dtype=bool)
    tail[30:] = True  # the long tail sits at the bottom of the scores
    genres = np.zeros((40, 4))
    genres[:20, 0] = 1  # the 20 best all share one genre
    genres[20:, 1 + np.arange(20) % 3] = 1
    plain = rerank(scores, tail, genres, 10, 0.0, 0.0)
    assert plain.tolist() == list(range(10))
    with_tail = rerank(scores, tail, genres, 10, 0.3, 0.0)
    assert tail[with_tail].sum() == 3 and with_tail[:7].tolist() == list(range(7))
    diverse = rerank(scores, tail, genres, 10, 0.0, 1.0)
    assert len(set(diverse.tolist())) == 10
    assert (genres[diverse].sum(axis=0) > 0).sum() == 4 > (genres[plain].sum(axis=0) > 0).sum()
    seen = scores.copy()
    seen[:35] = -np.inf  # only 5 valid candidates: they come first, then filler
    assert set(rerank(seen, tail, genres, 10, 0.5, 0.5)[:5].tolist()) == set(range(35, 40))
