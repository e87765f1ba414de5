"""Randomized search: scikit-learn's ParameterSampler, the same seed gives the same trials,
and the time budget only cuts the sequence short; large data is tuned on a sample of users."""

from __future__ import annotations

import pandas as pd

from movierec.model.training.tune import (
    MF_CHOICES,
    TuningBudget,
    randomized_search,
    sample_params,
    sample_users,
)
from tests.modelkit import FAST, block_data


def test_the_same_seed_samples_the_same_candidates_within_the_space() -> None:
    budget = TuningBudget(iterations=20, seed=3)
    a, b = sample_params(FAST, budget), sample_params(FAST, budget)
    assert a == b and len(a) == 20
    assert a != sample_params(FAST, TuningBudget(iterations=20, seed=4))
    for p in a:
        assert (p.mf_factors, p.mf_reg) in MF_CHOICES
        assert 4 <= p.xgb_max_depth <= 8 and 0.03 <= p.xgb_eta <= 0.15
        assert 0.7 <= p.xgb_subsample <= 1.0 and 0.6 <= p.xgb_colsample <= 1.0
        assert p.candidates == FAST.candidates  # untuned params stay the base's


def test_the_same_seed_gives_the_same_trials_and_the_best_of_them(
    block_ratings: pd.DataFrame,
) -> None:
    data = block_data(block_ratings)
    budget = TuningBudget(iterations=3, seconds=None, seed=5, threads=1)
    best_a, trials_a = randomized_search(data, FAST, budget)
    best_b, trials_b = randomized_search(data, FAST, budget)
    assert best_a == best_b
    assert [(t["params"], t["rmse"]) for t in trials_a] == [
        (t["params"], t["rmse"]) for t in trials_b
    ]
    best_trial = min(trials_a, key=lambda t: t["rmse"])
    assert {k: getattr(best_a, k) for k in best_trial["params"]} == best_trial["params"]


def test_a_spent_time_budget_stops_after_a_prefix_of_the_same_trials(
    block_ratings: pd.DataFrame,
) -> None:
    data = block_data(block_ratings)
    budget = TuningBudget(iterations=5, seconds=1e-9, seed=5, threads=1)
    _best, trials = randomized_search(data, FAST, budget)
    assert len(trials) == 1  # the first trial always runs
    first = sample_params(FAST, budget)[0]
    assert trials[0]["params"] == {k: getattr(first, k) for k in trials[0]["params"]}


def test_above_max_rows_the_trials_see_every_rating_of_a_sample_of_users(
    block_ratings: pd.DataFrame,
) -> None:
    data = block_data(block_ratings)  # 20 users x 6 ratings
    assert sample_users(data, len(data.ratings), seed=1) is data
    sample = sample_users(data, 30, seed=1)
    users = set(sample.ratings["user_id"])
    assert len(users) == 5 and len(sample.ratings) == 30  # whole users: 6 ratings each
    mine = block_ratings[block_ratings["user_id"].isin(users)]
    assert len(sample.ratings) == len(mine)  # every rating of the chosen users
    assert set(sample.interactions["user_id"]) == users
    assert users != set(sample_users(data, 30, seed=2).ratings["user_id"])
