"""Randomized search over the rating model's parameters (XGBoost and the MF embeddings).

Trials are scored by RMSE on a validation split carved from the TRAINING data only (never the
holdout): 10% of the training ratings, whose (user, movie) pairs are also removed from the
implicit interactions the CF models see. The budget is `tune_iterations` trials and
`tune_seconds` seconds, whichever ends first; the same seed gives the same trials. MF settings
come from a short list, so their out-of-fold features are computed once per setting and
shared by the trials that use it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from movierec.core.settings import Settings
from movierec.model.cf import BiasedMF, Index
from movierec.model.features import pair_features
from movierec.model.recommender import (
    DEFAULT_PARAMS,
    TrainingData,
    _fit_stage,
    _rating_extra,
    _xgb_params,
    rating_training_matrix,
)

log = logging.getLogger(__name__)

MF_CHOICES = [(16, 5.0), (32, 8.0), (32, 15.0), (64, 12.0)]
SPACE: dict[str, list[Any]] = {
    "xgb_max_depth": [4, 5, 6, 8],
    "xgb_eta": [0.03, 0.05, 0.08, 0.12],
    "xgb_subsample": [0.7, 0.85, 1.0],
    "xgb_colsample": [0.6, 0.8, 1.0],
    "xgb_min_child_weight": [1.0, 5.0, 20.0],
    "xgb_lambda": [1.0, 5.0, 20.0],
}


def randomized_search(data: Any, settings: Settings) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The best parameters found and every trial (params, rmse, rounds, seconds)."""
    import xgboost as xgb

    start = time.perf_counter()
    seed, threads = settings.training.seed, settings.training.n_threads
    rng = np.random.default_rng(seed)
    ratings = data.ratings
    valid_mask = rng.random(len(ratings)) < 0.1
    valid = ratings[valid_mask]
    pairs = pd.MultiIndex.from_frame(valid[["user_id", "movie_id"]])
    inter = data.interactions
    keep = ~pd.MultiIndex.from_frame(inter[["user_id", "movie_id"]]).isin(pairs)
    train = TrainingData(ratings[~valid_mask], inter[keep], data.users, data.movies)
    index = Index.build(
        train.interactions["user_id"].to_numpy(), data.movies["movie_id"].to_numpy()
    )
    stage = _fit_stage(train, index, DEFAULT_PARAMS, seed, threads)
    vu = index.uidx(valid["user_id"].to_numpy())
    vi = index.midx(valid["movie_id"].to_numpy())
    vy = valid["rating"].to_numpy(dtype=float)
    cache: dict[tuple[int, float], tuple[Any, Any, list[str]]] = {}
    trials: list[dict[str, Any]] = []
    best: tuple[float, dict[str, Any]] = (float("inf"), {})
    for t in range(settings.training.tune_iterations):
        if trials and time.perf_counter() - start > settings.training.tune_seconds:
            log.info(
                "tuning budget of %.0f s used after %d trials", settings.training.tune_seconds, t
            )
            break
        factors, reg = MF_CHOICES[int(rng.integers(len(MF_CHOICES)))]
        params = dict(DEFAULT_PARAMS, mf_factors=factors, mf_reg=reg)
        params.update({k: v[int(rng.integers(len(v)))] for k, v in SPACE.items()})
        t0 = time.perf_counter()
        key = (factors, reg)
        if key not in cache:
            X, y, names = rating_training_matrix(train, stage, params, seed)
            mf = BiasedMF(factors, reg, iters=params["mf_iters"], seed=seed)
            tu = index.uidx(train.ratings["user_id"].to_numpy())
            ti = index.midx(train.ratings["movie_id"].to_numpy())
            ok = (tu >= 0) & (ti >= 0)
            mf.fit(
                tu[ok],
                ti[ok],
                train.ratings["rating"].to_numpy(float)[ok],
                len(index.users),
                len(index.movies),
            )
            Xv, _ = pair_features(stage.base, vu, vi, _rating_extra(stage, vu, vi, mf))
            cache[key] = (
                xgb.DMatrix(X, y, feature_names=names),
                xgb.DMatrix(Xv, vy, feature_names=names),
                names,
            )
        dtrain, dvalid, _ = cache[key]
        booster = xgb.train(
            _xgb_params(params, seed, threads),
            dtrain,
            int(params["xgb_rounds"]),
            evals=[(dvalid, "valid")],
            early_stopping_rounds=30,
            verbose_eval=False,
        )
        rmse = float(booster.best_score)
        trial: dict[str, Any] = {
            "params": {k: params[k] for k in ("mf_factors", "mf_reg", *SPACE)},
            "rmse": rmse,
            "rounds": booster.best_iteration + 1,
            "seconds": round(time.perf_counter() - t0, 2),
        }
        trials.append(trial)
        log.info("trial %d: rmse %.4f %s", t, rmse, trial["params"])
        if rmse < best[0]:
            best = (rmse, dict(trial["params"]))
    return best[1], trials
