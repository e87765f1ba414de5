"""`CFStage`: the fitted collaborative-filtering state of one slice of the data - the dense
index, the feature base, the explicit MF, the implicit ALS embeddings, EASE's and RP3beta's
item neighbours and the seen matrix - and the CF features it gives (user, movie) pairs.

The index holds every user and movie the data names: the users table's users (so that a user
without history still has demographics), the catalog's movies (so that a new movie still has
genres and a year) and every id the interactions name (a movie the events know and the
catalog does not is trained on with unknown metadata). Whether a side has history is a mask
(`FeatureBase.user_seen` ...), never a -1 index.

The final model has one stage fitted on all its training data; the ranker's training split
and the tuning split fit their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from movierec.model.arrays import load_arrays, save_arrays
from movierec.model.cf import BiasedMF, Index, ItemNeighbours, Pairs, RP3beta
from movierec.model.features import BASE_ARRAYS, FeatureBase
from movierec.model.params import ModelParams

NEIGHBOURS = "neighbours"  # the files of EASE's strongest item-item weights (`neighbours.*.npy`)
NEIGHBOURS_KEPT = 200  # EASE's weights kept per movie: candidates and fold-in both sum them
_CF_ARRAYS = (
    "users",
    "movies",
    "mf_bu",
    "mf_bi",
    "mf_P",
    "mf_Q",
    "als_u",
    "als_i",
    "rp3_indptr",
    "rp3_indices",
    "rp3_scores",
    "seen_indptr",
    "seen_indices",
)


TIE_BREAK = 1e-6  # popularity's weight among candidates of equal item-item score


@dataclass
class CFStage:
    """The fitted CF models and feature base of one slice of the data."""

    index: Index
    base: FeatureBase
    mf: BiasedMF
    als_u: np.ndarray
    als_i: np.ndarray
    ease: ItemNeighbours  # EASE's strongest weights per movie: every history is scored by them
    rp3: RP3beta
    seen: sp.csr_matrix  # users x movies, 1 where the user interacted

    @cached_property
    def popularity_prior(self) -> np.ndarray:
        """Each movie's log popularity scaled into [0, TIE_BREAK], added to EASE's scores to
        order the movies no neighbour reaches: made once per stage, not per answer."""
        column = FeatureBase.ITEM_COLS.index("i_log_pop")
        pop = np.asarray(self.base.item_stats[:, column], dtype=np.float64)
        return TIE_BREAK * pop / max(float(pop.max(initial=0.0)), 1.0)

    def pairs(self, user_ids: np.ndarray, movie_ids: np.ndarray) -> Pairs:
        return Pairs.of(self.index, np.asarray(user_ids), np.asarray(movie_ids))

    def users_with_history(self) -> np.ndarray:
        """Index rows of the users with at least one interaction."""
        return np.flatnonzero(np.diff(self.seen.indptr) > 0)

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
            "rp3_indptr": self.rp3.W.indptr,
            "rp3_indices": self.rp3.W.indices,
            "rp3_scores": self.rp3.W.scores,
            "seen_indptr": self.seen.indptr,
            "seen_indices": self.seen.indices,
        }
        names = save_arrays(directory, "cf", cf)
        names += self.ease.save(directory, NEIGHBOURS)
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
        ease = ItemNeighbours.load(directory, NEIGHBOURS, mmap)
        if ease.movies != len(index.movies):
            raise ValueError(
                f"neighbours for {ease.movies} movies, the model has {len(index.movies)}"
            )
        rp3 = RP3beta(params.rp3_beta, params.rp3_neighbours)
        rp3.W = ItemNeighbours(cf["rp3_indptr"], cf["rp3_indices"], cf["rp3_scores"])
        # a read-only view of ones, not an array as long as the interactions: serving memory-maps
        ones = np.broadcast_to(np.float32(1.0), cf["seen_indices"].shape)
        seen = sp.csr_matrix(
            (ones, cf["seen_indices"], cf["seen_indptr"]),
            shape=(len(index.users), len(index.movies)),
        )
        base = FeatureBase.from_saved(index, features, scalars["features"])
        return cls(index, base, mf, cf["als_u"], cf["als_i"], ease, rp3, seen)


def rating_cf_features(
    stage: CFStage, pairs: Pairs, mf: BiasedMF | None = None, base: FeatureBase | None = None
) -> dict[str, np.ndarray]:
    """The explicit MF's prediction, biases and dot product of pairs (of `mf` and the `base`
    it was fitted with, if given, else the stage's): a side the fit has no rating of counts
    as new - the prediction is then the global mean plus the other side's bias."""
    m, b = mf or stage.mf, base or stage.base
    user_known, movie_known = b.user_rated(pairs), b.movie_rated(pairs)
    both = user_known & movie_known
    dot = np.full(len(pairs), np.nan, dtype=np.float32)
    dot[both] = np.einsum("ij,ij->i", m.P[pairs.u[both]], m.Q[pairs.i[both]])
    return {
        "mf_pred": m.predict(pairs.u, pairs.i, user_known, movie_known),
        "mf_bu": np.where(user_known, m.bu[pairs.u], np.nan),
        "mf_bi": np.where(movie_known, m.bi[pairs.i], np.nan),
        "mf_dot": dot,
    }


def cf_features(stage: CFStage, pairs: Pairs) -> dict[str, np.ndarray]:
    """The ranker's CF features: the rating model's, plus the implicit ALS score (which the
    rating model leaves out: a training pair's ALS score is in-sample - the pair is in its
    matrix - and would not carry over to unseen pairs; the ranker's candidates are all
    unseen)."""
    both = stage.base.user_seen(pairs) & stage.base.movie_seen(pairs)
    als = np.full(len(pairs), np.nan, dtype=np.float32)
    als[both] = np.einsum("ij,ij->i", stage.als_u[pairs.u[both]], stage.als_i[pairs.i[both]])
    return {**rating_cf_features(stage, pairs), "als_score": als}
