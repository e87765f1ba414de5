"""The stacked rating model: out-of-fold features never contain the row's own rating."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from movierec.model.cf import Index, Pairs
from movierec.model.features import RECENCY, pair_features
from movierec.model.params import ModelParams
from movierec.model.rating import CASES, NEW_USER, RatingModel, cases, predict_rows, rating_matrix
from movierec.model.recommender import TwoStageModel
from movierec.model.stage import rating_cf_features
from movierec.model.training.cf_stage import build_index, fit_stage
from movierec.model.training.dataset import TrainingData
from movierec.model.training.rating_fit import fit_rating_model, rating_training_matrix
from tests.modelkit import FAST, block_data


def test_out_of_fold_statistics_leave_the_rows_own_rating_out(
    block_ratings: pd.DataFrame,
) -> None:
    """Each user has 6 ratings; a row's u_count counts only the user's ratings in the other
    folds, so it is below 6 for every row - in-sample it would be 6 everywhere."""
    data = block_data(block_ratings)
    index = Index.build(block_ratings["user_id"].to_numpy(), data.movies["movie_id"].to_numpy())
    params = ModelParams(oof_folds=3)
    stage = fit_stage(data, index, params, threads=1)
    m = rating_training_matrix(
        data, stage, params.replace(cold_user_share=0.0, cold_movie_share=0.0)
    )
    X, names = m.X, m.names
    assert X.shape == (len(block_ratings), len(names))
    np.testing.assert_array_equal(
        np.sort(m.y), np.sort(block_ratings["rating"].to_numpy(dtype=float))
    )
    u_count = X[:, names.index("u_count")]
    assert (u_count < 6).all() and (u_count >= 0).all()
    assert np.isin(u_count, [0, 1, 2, 3, 4, 5]).all()
    assert stage.base.user_stats[:, 0].tolist() == [6.0] * 20  # in-sample


def test_the_rating_model_predicts_every_pair_and_records_its_rounds(
    block_ratings: pd.DataFrame,
) -> None:
    data = block_data(block_ratings)
    index = Index.build(block_ratings["user_id"].to_numpy(), data.movies["movie_id"].to_numpy())
    stage = fit_stage(data, index, FAST, threads=1)
    model = fit_rating_model(data, stage, FAST, threads=1)
    assert model.info["warm"]["rounds"] >= 1
    pred = model.predict(stage, Pairs.rows(np.array([0, -1, 3]), np.array([0, 5, -1])))
    assert pred.shape == (3,) and np.isfinite(pred).all()


def test_the_boosters_save_per_case_and_a_bundle_without_the_warm_one_is_refused(
    block_model: TwoStageModel, tmp_path: Path
) -> None:
    rating = block_model.parts.rating
    names = rating.save(tmp_path, "rating_model")
    assert names[0] == "rating_model.warm.json" and set(names) <= {
        f"rating_model.{case}.json" for case in CASES
    }
    again = RatingModel.load(tmp_path, "rating_model", rating.feature_names)
    assert set(again.boosters) == set(rating.boosters)
    (tmp_path / "rating_model.warm.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"rating_model\.warm\.json"):
        RatingModel.load(tmp_path, "rating_model", rating.feature_names)


def test_predictions_in_place_equal_a_dmatrix_with_the_prior_as_base_margin(
    block_model: TwoStageModel,
) -> None:
    """`predict_rows` skips the DMatrix; it must give what the booster gives through one."""
    rating, stage = block_model.parts.rating, block_model.parts.stage
    pairs = Pairs.rows(np.array([0, 1, 2, -1, 4]), np.array([0, 5, -1, 3, 2]))
    X, names = pair_features(stage.base, pairs, rating_cf_features(stage, pairs), RECENCY)
    booster = rating.boosters["warm"]
    through_dmatrix = booster.predict(rating_matrix(X, None, names))
    assert np.allclose(predict_rows(booster, X, names), through_dmatrix, atol=1e-5)
    with pytest.raises(ValueError, match="not the booster's"):
        predict_rows(booster, X[:, ::-1], names[::-1])


def _cohort_data() -> TrainingData:
    """48 users who arrive first and rate 4-5 stars, then 12 (the cold-row share) of whom the
    women rate 1 star and the men 2, each rating 10 of 30 movies; users 60 (a woman) and 61
    (a man) are in the users table only, as new users."""
    rng = np.random.default_rng(1)
    t0 = pd.Timestamp("2025-01-01T00:00:00Z")
    late = {u: 1 + u % 2 for u in range(48, 60)}
    rows = [
        (u, f"m+{j}+2000", late.get(u, int(rng.integers(4, 6))), t0)
        for u in range(60)
        for j in rng.choice(30, size=10, replace=False)
    ]
    ratings = pd.DataFrame(rows, columns=["user_id", "movie_id", "rating", "timestamp"])
    ratings["timestamp"] = t0 + pd.to_timedelta(np.arange(len(ratings)), unit="min")
    users = pd.DataFrame(
        {
            "user_id": np.arange(62),
            "age": 30,
            "gender": np.where(np.arange(62) % 2 == 0, "F", "M"),
            "occupation": "other",
        }
    )
    movies = pd.DataFrame(
        {"movie_id": [f"m+{j}+2000" for j in range(30)], "year": 2000, "genres": [["Drama"]] * 30}
    )
    return TrainingData.from_ratings(ratings.astype({"rating": "int8"}), users, movies)


def test_the_new_user_booster_learns_neither_the_cold_cohorts_mean_nor_demographics() -> None:
    """The cold rows are the latest-arriving users', who here rate 3 stars below the rest,
    their women 1 star below their men: a new user is still predicted near the prior (the
    global mean plus the movie's bias), not pulled towards that cohort, and a new woman and
    a new man get the same predictions."""
    data = _cohort_data()
    params = FAST.replace(cold_user_share=0.2, cold_movie_share=0.0)
    stage = fit_stage(data, build_index(data), params, threads=1)
    model = fit_rating_model(data, stage, params, threads=1)
    assert "new_user" in model.boosters
    movies = data.movies["movie_id"].to_numpy()
    pairs = [stage.pairs(np.full(30, user), movies) for user in (60, 61)]
    assert (cases(stage.base, pairs[0]) == NEW_USER).all()
    woman, man = (model.predict(stage, p) for p in pairs)
    np.testing.assert_allclose(woman, man)
    prior = stage.mf.mu + stage.mf.bi[pairs[0].i]
    assert abs(float(np.mean(woman - prior))) < 0.3
