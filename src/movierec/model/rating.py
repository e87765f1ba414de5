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
import xgboost as xgb

from movierec.model.cf import Pairs
from movierec.model.features import RECENCY, FeatureBase, pair_features
from movierec.model.stage import CFStage, rating_cf_features

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
    as `rating_matrix` says), without a DMatrix: building one costs a pass of XGBoost's thread pool,
    which on a loaded machine took 24 ms for a request's 100 rows (0.5 ms this way)."""
    check_features(booster, names)
    prior = X[:, names.index("mf_pred")]
    return np.asarray(booster.inplace_predict(X, base_margin=prior), dtype=np.float32)


def rating_matrix(X: np.ndarray, y: np.ndarray | None, names: list[str]) -> xgb.DMatrix:
    """Boosting starts from the MF's prediction (the priors where a side is new): trees only
    learn corrections to it, and without evidence the prediction stays at the prior."""
    prior = X[:, names.index("mf_pred")]
    return xgb.DMatrix(X, y, feature_names=names, base_margin=prior)
