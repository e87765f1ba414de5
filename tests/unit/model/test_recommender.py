"""The model interface: a known answer on the block dataset, determinism, save and load (also
memory-mapped), the rank-by-rating variant, and what an unfitted model says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from movierec.model.recommender import (
    RankByRating,
    Recommender,
    TwoStageModel,
    load_recommender,
)
from movierec.model.training.fit import fit_two_stage
from movierec.model.training.tune import TuningBudget, randomized_search
from tests.modelkit import FAST, block_data, file_mapped


def test_block_users_get_their_own_blocks_unseen_movies_first(
    block_model: TwoStageModel, block_ratings: pd.DataFrame
) -> None:
    lists = block_model.recommend(np.arange(20), k=4)
    for u in range(20):
        own = "a" if u < 10 else "b"
        seen = set(block_ratings.loc[block_ratings.user_id == u, "movie_id"])
        expected = {f"{own}+movie+{j}+2000" for j in range(10)} - seen
        assert set(lists[u]) == expected, (u, lists[u])
        assert not seen & set(block_model.recommend([u], k=12)[u])  # never a watched movie


def test_the_same_seed_gives_the_same_model(block_ratings: pd.DataFrame) -> None:
    """Tuned with a trial budget and no time limit, so CPU load cannot change the trials."""
    data = block_data(block_ratings)
    budget = TuningBudget(iterations=2, seconds=None, seed=7, threads=2)
    models = []
    for _ in range(2):
        params, trials = randomized_search(data, FAST, budget)
        assert len(trials) == 2
        models.append(fit_two_stage(data, params))
    a, b = models
    assert a.params == b.params
    u, m = block_ratings["user_id"], block_ratings["movie_id"]
    np.testing.assert_array_equal(a.predict_ratings(u, m), b.predict_ratings(u, m))
    assert a.recommend(np.arange(20), 8) == b.recommend(np.arange(20), 8)


@pytest.mark.parametrize("mmap", [False, True])
def test_a_saved_model_loads_back_identical(
    block_model: TwoStageModel, block_ratings: pd.DataFrame, tmp_path: Path, mmap: bool
) -> None:
    names = block_model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    assert not [n for n in names if n.endswith(".npz")]  # arrays stay apart, uncompressed
    again = TwoStageModel.load(tmp_path, mmap=mmap)
    assert file_mapped(again.stage.mf.P) == mmap
    assert again.params == block_model.params
    u, m = block_ratings["user_id"], block_ratings["movie_id"]
    np.testing.assert_array_equal(again.predict_ratings(u, m), block_model.predict_ratings(u, m))
    assert again.recommend(np.arange(20), 4) == block_model.recommend(np.arange(20), 4)
    assert again.cold_start(None, 5) == block_model.cold_start(None, 5)


def test_rank_by_rating_lists_unseen_movies_by_predicted_rating(
    block_model: TwoStageModel, block_ratings: pd.DataFrame, tmp_path: Path
) -> None:
    variant = RankByRating(block_model)
    movies = block_model.stage.index.movies
    lists = variant.recommend([3, 15, 999], k=5)
    for user in (3, 15):
        seen = set(block_ratings.loc[block_ratings.user_id == user, "movie_id"])
        assert not seen & set(lists[user])
        pred = dict(
            zip(movies, block_model.predict_ratings([user] * movies.size, movies), strict=True)
        )
        scores = [pred[m] for m in lists[user]]
        assert scores == sorted(scores, reverse=True)
        assert min(scores) >= max(pred[m] for m in set(movies) - seen - set(lists[user]))
    assert lists[999] == block_model.cold_start({"user_id": 999}, 5)  # unknown: cold start
    assert variant.describe()["params"]["ranking"] == RankByRating.RANKING
    variant.save(tmp_path)
    again = load_recommender(tmp_path)
    assert isinstance(again, RankByRating)
    assert again.recommend([3], k=5) == {3: lists[3]}
    assert isinstance(load_recommender(_saved(block_model, tmp_path / "plain")), TwoStageModel)


def _saved(model: Recommender, folder: Path) -> Path:
    folder.mkdir()
    model.save(folder)
    return folder


def test_a_user_without_ratings_is_predicted_from_priors_never_another_users_row(
    block_ratings: pd.DataFrame,
) -> None:
    """User 20 only watched (no rating), user 999 is absent altogether. Neither has a row in
    the rating MF's fit, so scrambling every user's MF factors and biases - and, for 999,
    every user's statistics and demographics - must not move their predictions. (A -1 index
    or an unfitted factor row would read another user's values, or random ones.)"""
    data = block_data(block_ratings)
    watched = data.interactions.iloc[:3].assign(user_id=20, rating=np.nan)
    inter = pd.concat([data.interactions, watched], ignore_index=True)
    model = fit_two_stage(
        type(data).from_interactions(inter, data.users, data.movies), FAST, threads=1
    )
    stage = model.stage
    movies = stage.index.movies
    before = {u: model.predict_ratings(np.full(movies.size, u), movies) for u in (20, 999)}
    # Scramble every user row the absent users must not read
    rng = np.random.default_rng(1)
    stage.mf.P = rng.normal(0.0, 5.0, stage.mf.P.shape)
    stage.mf.bu = rng.normal(0.0, 5.0, stage.mf.bu.shape)
    after_20 = model.predict_ratings(np.full(movies.size, 20), movies)
    base = stage.base
    for name in ("user_stats", "user_demo", "user_genre_share", "user_genre_dev_sum"):
        setattr(base, name, rng.normal(0.0, 50.0, getattr(base, name).shape))
    after_999 = model.predict_ratings(np.full(movies.size, 999), movies)
    np.testing.assert_allclose(after_20, before[20], rtol=0, atol=1e-6)
    np.testing.assert_allclose(after_999, before[999], rtol=0, atol=1e-6)
    # ... and the priors they come from are the movies' (not one flat value)
    assert np.ptp(before[999]) > 0.01
