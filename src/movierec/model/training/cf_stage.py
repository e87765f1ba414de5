"""Fitting the CF stage (`model.stage.CFStage`): the index of every user and movie, the
explicit MF, `implicit`'s ALS, EASE's neighbours (`item_item`), RP3beta and the feature base."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from movierec.core.progress import Progress
from movierec.model.cf import BiasedMF, Index, RP3beta, interaction_matrix
from movierec.model.features import build_base, occupations
from movierec.model.params import ModelParams
from movierec.model.stage import NEIGHBOURS_KEPT, CFStage
from movierec.model.training.dataset import TrainingData
from movierec.model.training.item_item import ease_neighbours


def build_index(data: TrainingData) -> Index:
    """Every user of the users table and the interactions; every movie of the catalog and the
    interactions."""
    users = np.union1d(data.users["user_id"].to_numpy(), data.interactions["user_id"].to_numpy())
    movies = np.union1d(
        data.movies["movie_id"].astype(str).to_numpy(),
        data.interactions["movie_id"].astype(str).to_numpy(),
    )
    return Index.build(users, movies)


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


def fit_stage(data: TrainingData, index: Index, params: ModelParams, threads: int) -> CFStage:
    """Fit the CF models and build the feature base of `data` over `index`."""
    base = build_base(
        index, data.ratings, data.interactions, data.users, data.movies, occupations(data.users)
    )
    mf = fit_mf(data, index, params)
    iu = index.uidx(data.interactions["user_id"].to_numpy())
    ii = index.midx(data.interactions["movie_id"].to_numpy())
    k = (iu >= 0) & (ii >= 0)
    # confidence grows with minutes watched; never with the rating (the rating model's
    # target must not leak into an embedding it reads)
    conf = 1.0 + np.log1p(data.interactions["minutes"].to_numpy(dtype=float)[k])
    X = interaction_matrix(iu[k], ii[k], len(index.users), len(index.movies), conf)
    als_u, als_i = implicit_als(X, params.als_factors, seed=params.seed, threads=threads)
    ease = ease_neighbours(X, params.ease_lambda, NEIGHBOURS_KEPT)
    rp3 = RP3beta(params.rp3_beta, params.rp3_neighbours).fit(X)
    seen = X.copy()
    seen.data[:] = 1.0
    return CFStage(index, base, mf, als_u, als_i, ease, rp3, seen)


def implicit_als(
    X: sp.csr_matrix,
    factors: int = 32,
    reg: float = 0.05,
    iters: int = 12,
    seed: int = 0,
    threads: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """User and item embeddings from implicit feedback (confidence in X's values)."""
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(
        factors=factors,
        regularization=reg,
        iterations=iters,
        random_state=seed,
        num_threads=threads,
    )
    with Progress("ALS", total=iters, unit="iterations") as bar:
        model.fit(
            X.tocsr().astype(np.float32), show_progress=False, callback=lambda *_: bar.update()
        )
    return np.asarray(model.user_factors), np.asarray(model.item_factors)
