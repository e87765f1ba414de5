"""Fitting the stacked rating model (`model.rating.RatingModel`): the out-of-fold training
matrix with its cold-start rows, and a booster per case, early-stopped on the latest arrivals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xgboost as xgb

from movierec.model.cf import ItemNeighbours, Pairs, RP3beta
from movierec.model.features import RECENCY, build_base, occupations, pair_features
from movierec.model.params import ModelParams
from movierec.model.rating import (
    CASES,
    CENTRED,
    EARLY_STOPPING_ROUNDS,
    INNER_VALID_SHARE,
    MIN_CASE_ROWS,
    NEW_MOVIE,
    NEW_USER,
    RatingModel,
    case_columns,
    cases,
)
from movierec.model.stage import CFStage, rating_cf_features
from movierec.model.training.cf_stage import fit_mf
from movierec.model.training.cluster import BoosterData, BoosterRun, Engine, InProcess
from movierec.model.training.dataset import TrainingData


def xgb_params(params: ModelParams, threads: int) -> dict[str, str | int | float]:
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


@dataclass
class TrainingMatrix:
    X: np.ndarray
    y: np.ndarray
    case: np.ndarray  # WARM, NEW_USER or NEW_MOVIE per row
    group: np.ndarray  # what a validation split keeps together: the user, the movie, the row
    when: np.ndarray  # the rating's time (days)
    names: list[str]

    def of_case(self, code: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        rows = self.case == code
        return self.X[rows], self.y[rows], self.group[rows], self.when[rows]


def rating_training_matrix(
    data: TrainingData, stage: CFStage, params: ModelParams, engine: Engine | None = None
) -> TrainingMatrix:
    """Features of the training ratings, out of fold, then the cold-start rows: each fold's
    rows get the MF values and the rating statistics (user and movie means, genre deviations)
    of a model and a base built without that fold, so no feature contains the row's own
    rating. The folds are tasks of `engine` (one after the other in-process)."""
    engine = engine or InProcess()
    pairs = stage.pairs(data.ratings["user_id"].to_numpy(), data.ratings["movie_id"].to_numpy())
    r = data.ratings["rating"].to_numpy(dtype=float)
    folds = np.random.default_rng(params.seed).integers(0, params.oof_folds, size=len(pairs))
    cold = _cold_rows(pairs, data.ratings["timestamp"], params)
    shared = engine.share(_FoldInputs(data, _index_only(stage, params), params, folds, pairs, cold))
    fitted = engine.map(_fold_blocks, range(params.oof_folds), shared)
    blocks = [block for part, _names in fitted for block in part]  # rows, features, cases
    names = fitted[0][1]
    order = np.concatenate([rows for rows, _, _ in blocks])
    case = np.concatenate([c for _, _, c in blocks])
    # a new-user booster must generalise to other users, a new-movie one to other movies
    group = np.where(
        case == NEW_USER, pairs.u[order], np.where(case == NEW_MOVIE, pairs.i[order], order)
    )
    X = np.vstack([Xf for _, Xf, _ in blocks])
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    when = (pd.to_datetime(data.ratings["timestamp"], utc=True) - epoch).dt.total_seconds()
    days = when.to_numpy(dtype=float)[order] / 86400.0
    return TrainingMatrix(X, r[order], case, group, days, names)


_Block = tuple[np.ndarray, np.ndarray, np.ndarray]  # rows, features, cases


@dataclass(frozen=True)
class _FoldInputs:
    """What every fold's task reads (scattered once to the workers)."""

    data: TrainingData
    stage: CFStage  # only its index is read: each fold fits its own MF and base
    params: ModelParams
    folds: np.ndarray
    pairs: Pairs
    cold: _Cold


def _fold_blocks(f: int, inputs: _FoldInputs) -> tuple[list[_Block], list[str]]:
    """The held-out rows of fold `f` and their cold-start copies, with features of an MF and
    a base fitted without them; and the feature names."""
    data, stage, params = inputs.data, inputs.stage, inputs.params
    tr, te = inputs.folds != f, inputs.folds == f
    mf = fit_mf(data, stage.index, params, rows=tr)
    base = build_base(
        stage.index, data.ratings[tr], data.interactions, data.users, data.movies,
        occupations(data.users),
    )  # fmt: skip
    blocks, names = [], list[str]()
    for rows, of in ((te, inputs.pairs), (te & inputs.cold.any, inputs.cold.pairs)):
        part = of.take(rows)
        extra = rating_cf_features(stage, part, mf, base)
        Xf, names = pair_features(base, part, extra, RECENCY)
        blocks.append((np.flatnonzero(rows), Xf, cases(base, part)))
    return blocks, names


_NO_NEIGHBOURS = ItemNeighbours(
    np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32)
)


def _index_only(stage: CFStage, params: ModelParams) -> CFStage:
    """`stage` without its large fitted parts (EASE, RP3beta, ALS, the seen matrix), which the
    fold tasks never read: what is scattered to every worker stays small."""
    empty = np.zeros((0, 0), dtype=np.float32)
    return CFStage(
        stage.index, stage.base, stage.mf, empty, empty, _NO_NEIGHBOURS,
        RP3beta(params.rp3_beta, params.rp3_neighbours), sp.csr_matrix((0, 0)),
    )  # fmt: skip


@dataclass
class _Cold:
    any: np.ndarray  # rows repeated as cold-start rows
    pairs: Pairs  # every row, with the chosen sides hidden


def _cold_rows(pairs: Pairs, timestamps: pd.Series, params: ModelParams) -> _Cold:
    """The rows of the latest-arriving share of the users (first rating), repeated with the
    user's history hidden (for half of those users the demographics too), and of the
    latest-arriving share of the movies, with the movie's."""
    rng = np.random.default_rng(params.seed + 2)
    n_users, n_movies = int(pairs.u.max(initial=0)) + 1, int(pairs.i.max(initial=0)) + 1
    t = pd.to_datetime(timestamps, utc=True).astype("int64").to_numpy() / 86400e9
    cold_users = _latest_arrivals(pairs.u, t, n_users, params.cold_user_share)
    cold_movies = _latest_arrivals(pairs.i, t, n_movies, params.cold_movie_share)
    unlisted = cold_users & (rng.random(n_users) < 0.5)
    users, movies = cold_users[pairs.u], cold_movies[pairs.i]
    return _Cold(users | movies, pairs.hide(users, movies, unlisted[pairs.u]))


def _latest_arrivals(idx: np.ndarray, t: np.ndarray, n: int, share: float) -> np.ndarray:
    """The `share` of the indexes (with rows) whose first row is latest."""
    first = np.full(n, np.inf)
    np.minimum.at(first, idx, t)
    present = np.isfinite(first)
    cut = np.quantile(first[present], 1.0 - share) if present.any() and share > 0 else np.inf
    return present & (first >= cut) & (share > 0)


def fit_rating_model(
    data: TrainingData,
    stage: CFStage,
    params: ModelParams,
    threads: int,
    engine: Engine | None = None,
) -> RatingModel:
    """A booster per case with enough rows, each on out-of-fold features: the number of
    rounds chosen by early stopping on an inner 10% split; the warm booster is then refitted
    on every warm row with that many rounds."""
    engine = engine or InProcess()
    m = rating_training_matrix(data, stage, params, engine)
    boosters, info = {}, {}
    for code, case in enumerate(CASES):
        X, y, group, when = m.of_case(code)
        if y.size < MIN_CASE_ROWS and case != "warm":
            continue
        cols = case_columns(case, m.names)
        names = [m.names[j] for j in cols]
        if case in CENTRED:
            y = y - float(np.mean(y - X[:, m.names.index("mf_pred")]))
        rows = BoosterData(X[:, cols], y, names, X[:, m.names.index("mf_pred")])
        boosters[case], info[case] = _fit_booster(
            engine, rows, _inner_split(group, when), xgb_params(params, threads), params, case
        )
    return RatingModel(boosters, m.names, info)


def _inner_split(group: np.ndarray, when: np.ndarray) -> np.ndarray:
    """Early-stopping rows: whole groups (users, movies or single rows), the latest to arrive
    (by their first row): the model is judged on what comes after what it learned from."""
    n = int(group.max(initial=0)) + 1
    return _latest_arrivals(group, when, n, INNER_VALID_SHARE)[group]


def _fit_booster(
    engine: Engine,
    rows: BoosterData,
    inner: np.ndarray,
    xp: dict[str, str | int | float],
    params: ModelParams,
    case: str,
) -> tuple[xgb.Booster, dict[str, Any]]:
    """Early-stopped on the `inner` rows; the warm case is refitted on every row with the
    rounds found (the others keep the early-stopped trees)."""
    run = BoosterRun(xp, params.xgb_rounds, rows.take(inner), EARLY_STOPPING_ROUNDS)
    booster = engine.train_booster(rows.take(~inner), run)
    best = booster.best_iteration + 1
    info = {"rows": int(rows.y.size), "rounds": best, "inner_valid_rmse": float(booster.best_score)}
    if case == "warm":
        return engine.train_booster(rows, BoosterRun(xp, best)), info
    return booster[:best], info
