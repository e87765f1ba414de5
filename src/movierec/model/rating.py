"""The stacked rating model: XGBoost regression of the rating on pair features
(`features.py`) plus the explicit MF's prediction, biases and embedding dot product.

The MF values of the rows XGBoost trains on are out of fold (each fold's MF never saw the
row), and so are the user and movie rating statistics, so stacking does not leak the target.
Its RMSE on the holdout is the promotion metric.

Cold start is learned, not patched. A pair is in one of three cases: both sides have ratings
in the fit (`warm`), the user has none (`new_user`: a new user, or one who only watched), or
only the movie has none (`new_movie`). Each case has its own booster, trained on rows of that
case: besides every training rating, the training matrix holds a share of them again with the
user's history hidden (for half of those the demographics too), and a share with the movie's
history hidden - rows that look like a new user or movie, with their true ratings. The
new-user booster so learns what to predict from the movie's statistics; the new-movie
booster from the user's statistics and the movie's genres and year (none for a title the
catalog does not know).

The new-user booster learns departures from its prior (the global mean plus the movie's bias)
that carry over to the users who arrive next, and nothing else: its cold rows are the
latest-arriving users of the training period, whose mean departure from the prior is their
cohort's (on ml-100k's time cut they rated 0.08 below it; the users after the cut, 0.01
below), so that mean is taken out of its targets; and it leaves out the demographics, which
it learned from a few hundred users' ratings and which did not carry over (early-stopping
RMSE on the latest-arriving cold users 0.9339 with them, 0.9305 without; new users after
the time cut 1.0459 with, 1.0423 without).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from movierec.model.cf import Pairs
from movierec.model.data import TrainingData
from movierec.model.features import (
    RECENCY,
    FeatureBase,
    build_base,
    occupations,
    pair_features,
)
from movierec.model.params import ModelParams
from movierec.model.stage import CFStage, fit_mf, rating_cf_features

EARLY_STOPPING_ROUNDS = 30
INNER_VALID_SHARE = 0.1
CASES = ("warm", "new_user", "new_movie")
WARM, NEW_USER, NEW_MOVIE = range(3)
MIN_CASE_ROWS = 50  # a case with fewer training rows is predicted by the warm booster
LEFT_OUT = {"new_user": ("age", "female", "occupation")}  # features a case's booster lacks
CENTRED = ("new_user",)  # cases whose targets lose their mean departure from the prior


def case_columns(case: str, names: list[str]) -> list[int]:
    """The positions in `names` of the features `case`'s booster reads."""
    left_out = LEFT_OUT.get(case, ())
    return [j for j, name in enumerate(names) if name not in left_out]


def cases(base: FeatureBase, pairs: Pairs) -> np.ndarray:
    """Each pair's case (WARM, NEW_USER, NEW_MOVIE) by what has ratings in `base`."""
    user, movie = base.user_rated(pairs), base.movie_rated(pairs)
    return np.where(~user, NEW_USER, np.where(~movie, NEW_MOVIE, WARM))


@dataclass
class RatingModel:
    """A booster per case (a case without one uses the warm one) and the feature names."""

    boosters: dict[str, xgb.Booster]
    feature_names: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    def predict(self, stage: CFStage, pairs: Pairs) -> np.ndarray:
        """Predicted ratings of pairs of `stage`'s index, unclipped."""
        X, _ = pair_features(stage.base, pairs, rating_cf_features(stage, pairs), RECENCY)
        case = cases(stage.base, pairs)
        out = np.empty(len(pairs), dtype=np.float32)
        for code, name in enumerate(CASES):
            rows = case == code
            if rows.any():
                used = name if name in self.boosters else "warm"
                cols = case_columns(used, self.feature_names)
                names = [self.feature_names[j] for j in cols]
                out[rows] = predict_rows(self.boosters[used], X[rows][:, cols], names)
        return out

    def save(self, directory: Path, prefix: str) -> list[str]:
        names = []
        for case, booster in self.boosters.items():
            names.append(f"{prefix}.{case}.json")
            booster.save_model(directory / names[-1])
        return names

    @classmethod
    def load(cls, directory: Path, prefix: str, feature_names: list[str]) -> RatingModel:
        warm = directory / f"{prefix}.{CASES[0]}.json"
        if not warm.exists():  # e.g. a bundle of an older format, with one booster
            raise FileNotFoundError(f"no rating booster {warm.name} in {directory}")
        boosters = {}
        for case in CASES:
            path = directory / f"{prefix}.{case}.json"
            if path.exists():
                boosters[case] = xgb.Booster()
                boosters[case].load_model(path)
        return cls(boosters, feature_names)


def check_features(booster: xgb.Booster, names: list[str]) -> None:
    """A booster reads its columns by position: names other than those it was trained on are
    refused. Checked once per booster and names (reading them back is a call into XGBoost:
    60 us, a tenth of a fold-in's cost when it was asked at every prediction)."""
    key = tuple(names)
    if _CHECKED.get(booster) == key:
        return
    if booster.feature_names is not None and booster.feature_names != names:
        raise ValueError(f"features {names} are not the booster's {booster.feature_names}")
    _CHECKED[booster] = key


_CHECKED: weakref.WeakKeyDictionary[xgb.Booster, tuple[str, ...]] = weakref.WeakKeyDictionary()


def predict_rows(booster: xgb.Booster, X: np.ndarray, names: list[str]) -> np.ndarray:
    """`booster`'s predictions of the rows of X (columns `names`, boosting from the MF prior
    as `_matrix` says), without a DMatrix: building one costs a pass of XGBoost's thread pool,
    which on a loaded machine took 24 ms for a request's 100 rows (0.5 ms this way)."""
    check_features(booster, names)
    prior = X[:, names.index("mf_pred")]
    return np.asarray(booster.inplace_predict(X, base_margin=prior), dtype=np.float32)


def _matrix(X: np.ndarray, y: np.ndarray | None, names: list[str]) -> xgb.DMatrix:
    """Boosting starts from the MF's prediction (the priors where a side is new): trees only
    learn corrections to it, and without evidence the prediction stays at the prior."""
    prior = X[:, names.index("mf_pred")]
    return xgb.DMatrix(X, y, feature_names=names, base_margin=prior)


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
    data: TrainingData, stage: CFStage, params: ModelParams
) -> TrainingMatrix:
    """Features of the training ratings, out of fold, then the cold-start rows: each fold's
    rows get the MF values and the rating statistics (user and movie means, genre deviations)
    of a model and a base built without that fold, so no feature contains the row's own
    rating."""
    pairs = stage.pairs(data.ratings["user_id"].to_numpy(), data.ratings["movie_id"].to_numpy())
    r = data.ratings["rating"].to_numpy(dtype=float)
    folds = np.random.default_rng(params.seed).integers(0, params.oof_folds, size=len(pairs))
    cold = _cold_rows(pairs, data.ratings["timestamp"], params)
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # rows, features, cases
    names: list[str] = []
    codes = occupations(data.users)
    for f in range(params.oof_folds):
        tr, te = folds != f, folds == f
        mf = fit_mf(data, stage.index, params, rows=tr)
        base = build_base(
            stage.index, data.ratings[tr], data.interactions, data.users, data.movies, codes
        )
        for rows, of in ((te, pairs), (te & cold.any, cold.pairs)):
            part = of.take(rows)
            extra = rating_cf_features(stage, part, mf, base)
            Xf, names = pair_features(base, part, extra, RECENCY)
            blocks.append((np.flatnonzero(rows), Xf, cases(base, part)))
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
    data: TrainingData, stage: CFStage, params: ModelParams, threads: int
) -> RatingModel:
    """A booster per case with enough rows, each on out-of-fold features: the number of
    rounds chosen by early stopping on an inner 10% split; the warm booster is then refitted
    on every warm row with that many rounds."""
    m = rating_training_matrix(data, stage, params)
    boosters, info = {}, {}
    for code, case in enumerate(CASES):
        X, y, group, when = m.of_case(code)
        if y.size < MIN_CASE_ROWS and case != "warm":
            continue
        cols = case_columns(case, m.names)
        names = [m.names[j] for j in cols]
        if case in CENTRED:
            y = y - float(np.mean(y - X[:, m.names.index("mf_pred")]))
        inner = _inner_split(group, when)
        boosters[case], info[case] = _fit_booster(
            X[:, cols], y, inner, names, params, threads, refit=case == "warm"
        )
    return RatingModel(boosters, m.names, info)


def _inner_split(group: np.ndarray, when: np.ndarray) -> np.ndarray:
    """Early-stopping rows: whole groups (users, movies or single rows), the latest to arrive
    (by their first row): the model is judged on what comes after what it learned from."""
    n = int(group.max(initial=0)) + 1
    return _latest_arrivals(group, when, n, INNER_VALID_SHARE)[group]


def _fit_booster(
    X: np.ndarray,
    y: np.ndarray,
    inner: np.ndarray,
    names: list[str],
    params: ModelParams,
    threads: int,
    refit: bool,
) -> tuple[xgb.Booster, dict[str, Any]]:
    xp = xgb_params(params, threads)
    dtrain = _matrix(X[~inner], y[~inner], names)
    dvalid = _matrix(X[inner], y[inner], names)
    booster = xgb.train(
        xp,
        dtrain,
        params.xgb_rounds,
        evals=[(dvalid, "valid")],
        early_stopping_rounds=EARLY_STOPPING_ROUNDS,
        verbose_eval=False,
    )
    best = booster.best_iteration + 1
    info = {"rows": int(y.size), "rounds": best, "inner_valid_rmse": float(booster.best_score)}
    if refit:
        return xgb.train(xp, _matrix(X, y, names), best), info
    return booster[:best], info
