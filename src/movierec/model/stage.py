"""`CFStage`: the fitted collaborative-filtering state of one slice of the data - the dense
index, the feature base, the explicit MF, the implicit ALS embeddings, EASE and the seen
matrix - and the CF features it gives (user, movie) pairs.

The final model has one stage fitted on all its training data; the ranker's training split
and the tuning split fit their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from movierec.model.arrays import load_arrays, save_arrays
from movierec.model.cf import EASE, BiasedMF, Index
from movierec.model.data import TrainingData
from movierec.model.features import BASE_ARRAYS, FeatureBase
from movierec.model.params import ModelParams

_CF_ARRAYS = (
    "users",
    "movies",
    "mf_bu",
    "mf_bi",
    "mf_P",
    "mf_Q",
    "als_u",
    "als_i",
    "ease_B",
    "seen_indptr",
    "seen_indices",
)


@dataclass
class CFStage:
    """The fitted CF models and feature base of one slice of the data."""

    index: Index
    base: FeatureBase
    mf: BiasedMF
    als_u: np.ndarray
    als_i: np.ndarray
    ease: EASE
    seen: sp.csr_matrix  # users x movies, 1 where the user interacted

    # ---- persistence -------------------------------------------------------------------------
    def save(self, directory: Path) -> tuple[list[str], dict[str, Any]]:
        """The arrays as `.npy` files, and the scalars to keep in the model's JSON."""
        cf = {
            "users": self.index.users,
            "movies": self.index.movies.astype(str),
            "mf_bu": self.mf.bu,
            "mf_bi": self.mf.bi,
            "mf_P": self.mf.P,
            "mf_Q": self.mf.Q,
            "als_u": self.als_u,
            "als_i": self.als_i,
            "ease_B": self.ease.B,
            "seen_indptr": self.seen.indptr,
            "seen_indices": self.seen.indices,
        }
        names = save_arrays(directory, "cf", cf)
        names += save_arrays(directory, "features", self.base.arrays())
        scalars = {"mf_mu": self.mf.mu, "features": self.base.scalars()}
        return names, scalars

    @classmethod
    def load(
        cls, directory: Path, scalars: dict[str, Any], params: ModelParams, mmap: bool = False
    ) -> CFStage:
        cf = load_arrays(directory, "cf", _CF_ARRAYS, mmap)
        features = load_arrays(directory, "features", BASE_ARRAYS, mmap)
        index = Index(cf["users"], cf["movies"])
        mf = BiasedMF(params.mf_factors, params.mf_reg, iters=params.mf_iters, seed=params.seed)
        mf.mu, mf.bu, mf.bi, mf.P, mf.Q = (
            float(scalars["mf_mu"]),
            cf["mf_bu"],
            cf["mf_bi"],
            cf["mf_P"],
            cf["mf_Q"],
        )
        ease = EASE(params.ease_lambda)
        ease.B = cf["ease_B"]
        # a read-only view of ones, not an array as long as the interactions: serving memory-maps
        ones = np.broadcast_to(np.float32(1.0), cf["seen_indices"].shape)
        seen = sp.csr_matrix(
            (ones, cf["seen_indices"], cf["seen_indptr"]),
            shape=(len(index.users), len(index.movies)),
        )
        base = FeatureBase.from_saved(index, features, scalars["features"])
        return cls(index, base, mf, cf["als_u"], cf["als_i"], ease, seen)


def fit_mf(
    data: TrainingData, index: Index, params: ModelParams, rows: np.ndarray | None = None
) -> BiasedMF:
    """The explicit MF on `data`'s ratings (only `rows` of them, a boolean mask, if given)."""
    u = index.uidx(data.ratings["user_id"].to_numpy())
    i = index.midx(data.ratings["movie_id"].to_numpy())
    r = data.ratings["rating"].to_numpy(dtype=float)
    ok = (u >= 0) & (i >= 0)
    if rows is not None:
        ok &= rows
    mf = BiasedMF(params.mf_factors, params.mf_reg, iters=params.mf_iters, seed=params.seed)
    return mf.fit(u[ok], i[ok], r[ok], len(index.users), len(index.movies))


def cf_features(
    stage: CFStage, u: np.ndarray, i: np.ndarray, mf: BiasedMF | None = None
) -> dict[str, np.ndarray]:
    """The ranker's CF features of pairs: the explicit MF's prediction, biases and dot
    product (of `mf` if given, else the stage's) and the implicit ALS score."""
    m = mf or stage.mf
    both = (u >= 0) & (i >= 0)
    dot = np.full(u.shape, np.nan, dtype=np.float32)
    dot[both] = np.einsum("ij,ij->i", m.P[u[both]], m.Q[i[both]])
    als = np.full(u.shape, np.nan, dtype=np.float32)
    als[both] = np.einsum("ij,ij->i", stage.als_u[u[both]], stage.als_i[i[both]])
    return {
        "mf_pred": m.predict(u, i),
        "mf_bu": np.where(u >= 0, m.bu[np.maximum(u, 0)], np.nan),
        "mf_bi": np.where(i >= 0, m.bi[np.maximum(i, 0)], np.nan),
        "mf_dot": dot,
        "als_score": als,
    }


def rating_cf_features(
    stage: CFStage, u: np.ndarray, i: np.ndarray, mf: BiasedMF | None = None
) -> dict[str, np.ndarray]:
    """The rating model's CF features: the explicit MF's values only. (The implicit ALS score
    of a training pair is in-sample - the pair is in its matrix - and would not carry over to
    unseen pairs; the ranker, whose candidates are all unseen, uses it.)"""
    extra = cf_features(stage, u, i, mf)
    del extra["als_score"]
    return extra
