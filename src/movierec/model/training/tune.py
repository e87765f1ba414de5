"""Randomized search over the rating model's parameters (XGBoost and the MF embeddings).

Trials are scored by RMSE on a validation split carved from the TRAINING data only (never the
holdout): 10% of the training ratings, whose (user, movie) pairs are also removed from the
implicit interactions the CF models see. Candidates are drawn by scikit-learn's
`ParameterSampler` from `scipy.stats` distributions, so the same seed gives the same sequence
of trials. The budget is `iterations` trials and `seconds` seconds, whichever ends first: the
time limit only cuts that sequence short (the trials that ran are a prefix of it). Above
`max_rows` training ratings, the trials run on every rating of a random sample of users, about
`max_rows` ratings in all: on ml-1m one trial on all 900,000 ratings took 74 s, so a 60 s
budget ran a single trial - one random draw, not a search. MF settings
come from a short list, so their out-of-fold features are computed once per setting and
shared by the trials that use it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb
from scipy.stats import loguniform, randint, uniform
from sklearn.model_selection import ParameterSampler

from movierec.data.splits import exclude_pairs
from movierec.model.cf import Pairs
from movierec.model.features import RECENCY, pair_features
from movierec.model.params import ModelParams
from movierec.model.rating import EARLY_STOPPING_ROUNDS, WARM
from movierec.model.stage import CFStage, rating_cf_features
from movierec.model.training.cf_stage import build_index, fit_mf, fit_stage
from movierec.model.training.cluster import ClusterPlan, Engine, InProcess
from movierec.model.training.dataset import TrainingData
from movierec.model.training.rating_fit import rating_training_matrix, xgb_params

log = logging.getLogger(__name__)

VALID_SHARE = 0.1
NO_COLD_ROWS = {"cold_user_share": 0.0, "cold_movie_share": 0.0}  # trials tune the warm case
MF_CHOICES = [(16, 5.0), (32, 8.0), (32, 15.0), (64, 12.0)]  # (factors, regularisation)
TUNED = (
    "mf_factors",
    "mf_reg",
    "xgb_max_depth",
    "xgb_eta",
    "xgb_subsample",
    "xgb_colsample",
    "xgb_min_child_weight",
    "xgb_lambda",
)


@dataclass(frozen=True)
class TuningBudget:
    """How much search: at most `iterations` trials and `seconds` (None: no time limit)."""

    iterations: int = 12
    seconds: float | None = 60.0
    seed: int = 42
    threads: int = 2
    max_rows: int | None = 200_000  # ratings the trials see (None: all)


def search_space() -> dict[str, Any]:
    return {
        "mf": MF_CHOICES,
        "xgb_max_depth": randint(4, 9),
        "xgb_eta": loguniform(0.03, 0.15),
        "xgb_subsample": uniform(0.7, 0.3),
        "xgb_colsample": uniform(0.6, 0.4),
        "xgb_min_child_weight": loguniform(1.0, 20.0),
        "xgb_lambda": loguniform(1.0, 20.0),
    }


def sample_params(base: ModelParams, budget: TuningBudget) -> list[ModelParams]:
    """The sequence of candidate parameters the search tries, in order."""
    sampler = ParameterSampler(search_space(), budget.iterations, random_state=budget.seed)
    out = []
    for drawn in sampler:
        factors, reg = drawn.pop("mf")
        values = {k: float(f"{v:.4g}") for k, v in drawn.items()}
        values["xgb_max_depth"] = int(values["xgb_max_depth"])
        out.append(base.replace(mf_factors=factors, mf_reg=reg, **values))
    return out


@dataclass
class _Split:
    train: TrainingData
    stage: CFStage
    valid: Pairs
    vy: np.ndarray


def randomized_search(
    data: TrainingData, base: ModelParams, budget: TuningBudget, engine: Engine | None = None
) -> tuple[ModelParams, list[dict[str, Any]]]:
    """The best parameters found (`base` with the tuned ones replaced) and every trial
    (params, rmse, rounds, seconds). Trials are tasks of `engine`: in-process they run one
    after the other, on a cluster at once; either way the result is the best of the prefix of
    the sequence that finished within the time budget."""
    start = time.monotonic()
    engine = engine or InProcess(ClusterPlan(threads=budget.threads))
    if budget.max_rows is not None:
        data = sample_users(data, budget.max_rows, budget.seed)
    split = engine.share(_validation_split(data, base, budget.threads))
    matrices: dict[tuple[int, float], Any] = {}  # one task per MF setting, shared by its trials
    tasks = []
    for params in sample_params(base, budget):
        key = (params.mf_factors, params.mf_reg)
        if key not in matrices:
            matrices[key] = engine.submit(_matrices, split, params)
        tasks.append(engine.submit(_trial, matrices[key], params, engine.task_threads))
    deadline = None if budget.seconds is None else start + budget.seconds
    trials = engine.results(tasks, deadline)
    if len(trials) < len(tasks):
        log.info("tuning budget of %.0f s used after %d trials", budget.seconds, len(trials))
    best, best_rmse = base, float("inf")
    for t, (params, trial) in enumerate(zip(sample_params(base, budget), trials, strict=False)):
        log.info("trial %d: rmse %.4f %s", t, trial["rmse"], trial["params"])
        if trial["rmse"] < best_rmse:
            best, best_rmse = params, trial["rmse"]
    return best, trials


def sample_users(data: TrainingData, max_rows: int, seed: int) -> TrainingData:
    """Every rating and interaction of random users, about `max_rows` ratings in all (`data`
    itself when it has no more)."""
    if len(data.ratings) <= max_rows:
        return data
    per_user = data.ratings.groupby("user_id").size()
    users = np.random.default_rng(seed).permutation(per_user.index.to_numpy())
    total = np.cumsum(per_user.loc[users].to_numpy())
    chosen = users[: int(np.searchsorted(total, max_rows)) + 1]
    log.info("tuning on %d users' %d ratings", chosen.size, int(total[chosen.size - 1]))
    return TrainingData(
        data.ratings[data.ratings["user_id"].isin(chosen)],
        data.interactions[data.interactions["user_id"].isin(chosen)],
        data.users,
        data.movies,
    )


def _validation_split(data: TrainingData, params: ModelParams, threads: int) -> _Split:
    """10% of the ratings for validation; their pairs leave every training table."""
    valid_mask = np.random.default_rng(params.seed).random(len(data.ratings)) < VALID_SHARE
    valid = data.ratings[valid_mask]
    train = TrainingData(
        data.ratings[~valid_mask],
        exclude_pairs(data.interactions, valid),
        data.users,
        data.movies,
    )
    stage = fit_stage(train, build_index(train), params, threads)
    pairs = stage.pairs(valid["user_id"].to_numpy(), valid["movie_id"].to_numpy())
    return _Split(train, stage, pairs, valid["rating"].to_numpy(dtype=float))


@dataclass(frozen=True)
class _Matrices:
    """One MF setting's out-of-fold training rows and validation rows (plain arrays: they
    travel between workers)."""

    X: np.ndarray
    y: np.ndarray
    Xv: np.ndarray
    yv: np.ndarray
    names: list[str]


def _trial(matrices: _Matrices, params: ModelParams, threads: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    booster = xgb.train(
        xgb_params(params, threads),
        xgb.DMatrix(matrices.X, matrices.y, feature_names=matrices.names),
        params.xgb_rounds,
        evals=[(xgb.DMatrix(matrices.Xv, matrices.yv, feature_names=matrices.names), "valid")],
        early_stopping_rounds=EARLY_STOPPING_ROUNDS,
        verbose_eval=False,
    )
    return {
        "params": {k: getattr(params, k) for k in TUNED},
        "rmse": float(booster.best_score),
        "rounds": booster.best_iteration + 1,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _matrices(split: _Split, params: ModelParams) -> _Matrices:
    """Out-of-fold training features and validation features for one MF setting."""
    matrix = rating_training_matrix(split.train, split.stage, params.replace(**NO_COLD_ROWS))
    X, y, _group, _when = matrix.of_case(WARM)
    mf = fit_mf(split.train, split.stage.index, params)
    extra = rating_cf_features(split.stage, split.valid, mf)
    Xv, _ = pair_features(split.stage.base, split.valid, extra, RECENCY)
    return _Matrices(X, y, Xv, split.vy, matrix.names)
