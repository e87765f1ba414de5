"""The stacked rating model: XGBoost regression of the rating on pair features
(`features.py`) plus the explicit MF's prediction, biases and embedding dot product.

The MF values of the rows XGBoost trains on are out of fold (each fold's MF never saw the
row), and so are the user and movie rating statistics, so stacking does not leak the target.
Its RMSE on the holdout is the promotion metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from movierec.model.data import TrainingData
from movierec.model.features import build_base, occupations, pair_features
from movierec.model.params import ModelParams
from movierec.model.stage import CFStage, fit_mf, rating_cf_features

EARLY_STOPPING_ROUNDS = 30
INNER_VALID_SHARE = 0.1


@dataclass
class RatingModel:
    """A fitted rating booster and the names of its feature columns."""

    booster: xgb.Booster
    feature_names: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    def predict(self, stage: CFStage, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """Predicted ratings of pairs (dense indexes of `stage`), unclipped."""
        X, _ = pair_features(stage.base, u, i, rating_cf_features(stage, u, i))
        return self.booster.predict(xgb.DMatrix(X, feature_names=self.feature_names))

    def save(self, path: Path) -> None:
        self.booster.save_model(path)

    @classmethod
    def load(cls, path: Path, feature_names: list[str]) -> RatingModel:
        booster = xgb.Booster()
        booster.load_model(path)
        return cls(booster, feature_names)


def xgb_params(params: ModelParams, threads: int) -> dict[str, Any]:
    return {
        "objective": "reg:squarederror",
        "eval_metric": "rmse",
        "tree_method": "hist",
        "max_depth": int(params.xgb_max_depth),
        "eta": float(params.xgb_eta),
        "subsample": float(params.xgb_subsample),
        "colsample_bytree": float(params.xgb_colsample),
        "min_child_weight": float(params.xgb_min_child_weight),
        "lambda": float(params.xgb_lambda),
        "seed": params.seed,
        "nthread": threads,
    }


def rating_training_matrix(
    data: TrainingData, stage: CFStage, params: ModelParams
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features of the training ratings, out of fold: each fold's rows get the MF values and
    the rating statistics (user and movie means, genre deviations) of a model and a base
    built without that fold, so no feature contains the row's own rating."""
    idx = stage.index
    u = idx.uidx(data.ratings["user_id"].to_numpy())
    i = idx.midx(data.ratings["movie_id"].to_numpy())
    r = data.ratings["rating"].to_numpy(dtype=float)
    folds = np.random.default_rng(params.seed).integers(0, params.oof_folds, size=u.size)
    X: np.ndarray | None = None
    names: list[str] = []
    codes = occupations(data.users)
    for f in range(params.oof_folds):
        tr, te = folds != f, folds == f
        mf = fit_mf(data, idx, params, rows=tr)
        base = build_base(idx, data.ratings[tr], data.interactions, data.users, data.movies, codes)
        Xf, names = pair_features(base, u[te], i[te], rating_cf_features(stage, u[te], i[te], mf))
        if X is None:
            X = np.empty((u.size, Xf.shape[1]), dtype=np.float32)
        X[te] = Xf
    assert X is not None
    return X, r, names


def fit_rating_model(
    data: TrainingData, stage: CFStage, params: ModelParams, threads: int
) -> RatingModel:
    """XGBoost on out-of-fold features: the number of rounds chosen by early stopping on an
    inner 10% split, then a refit on every row with that many rounds."""
    X, y, names = rating_training_matrix(data, stage, params)
    xp = xgb_params(params, threads)
    inner = np.random.default_rng(params.seed + 1).random(y.size) < INNER_VALID_SHARE
    dtrain = xgb.DMatrix(X[~inner], y[~inner], feature_names=names)
    dvalid = xgb.DMatrix(X[inner], y[inner], feature_names=names)
    booster = xgb.train(
        xp,
        dtrain,
        params.xgb_rounds,
        evals=[(dvalid, "valid")],
        early_stopping_rounds=EARLY_STOPPING_ROUNDS,
        verbose_eval=False,
    )
    best = booster.best_iteration + 1
    final = xgb.train(xp, xgb.DMatrix(X, y, feature_names=names), best)
    return RatingModel(
        final, names, {"rounds": best, "inner_valid_rmse": float(booster.best_score)}
    )
