"""The recommendation model: CF embeddings + features -> XGBoost, in two stages.

Rating model. XGBoost regression of the rating on pair features (`features.py`) plus the
explicit MF's prediction, biases and embedding dot product, and the implicit ALS score. The MF
values of the rows XGBoost trains on are out-of-fold (each fold's MF never saw the row), and
user/movie rating statistics are out-of-fold too, so stacking does not leak the target.
Its RMSE on the holdout is the promotion metric.

Ranking. Ranking unseen movies by predicted rating favours obscure movies with a few high
ratings, so the list is built in two stages: EASE proposes candidates from implicit feedback,
and an XGBoost ranker (LambdaMART, `rank:ndcg`) re-ranks them with the EASE score and rank,
the ALS score, popularity, genre affinity, recency and a rating model's prediction. The ranker
learns on a split inside the training data: generators fitted on each user's earlier
interactions, labels from their later ones (2 = rated >= 4, 1 = watched otherwise).

Cold start. A user with no history gets the movies most liked (rated >= 4) by users of the
same gender and age group, else overall.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from movierec.core.settings import Settings
from movierec.model.cf import EASE, BiasedMF, Index, implicit_als, interaction_matrix
from movierec.model.features import FeatureBase, age_group, build_base, pair_features

log = logging.getLogger(__name__)

# Below this many relevant (user, movie) pairs in its training split, a learned ranker is noise
# that can only spoil the candidate order; the lists then keep EASE's order.
MIN_RANKER_POSITIVES = 100

DEFAULT_PARAMS: dict[str, Any] = {
    "mf_factors": 32,
    "mf_reg": 8.0,
    "mf_iters": 8,
    "als_factors": 32,
    "ease_lambda": 500.0,
    "xgb_max_depth": 6,
    "xgb_eta": 0.05,
    "xgb_subsample": 0.85,
    "xgb_colsample": 0.8,
    "xgb_min_child_weight": 5.0,
    "xgb_lambda": 5.0,
    "xgb_rounds": 1500,
    "rank_rounds": 150,
    "rank_max_depth": 6,
    "rank_eta": 0.1,
    "candidates": 100,
    "oof_folds": 3,
    "ranker_split": "random",
}


@dataclass(frozen=True)
class TrainingData:
    """What a model learns from, in the canonical schema (pandas)."""

    ratings: pd.DataFrame  # user_id, movie_id, rating, timestamp
    interactions: pd.DataFrame  # user_id, movie_id, minutes, rating, first_ts, last_ts
    users: pd.DataFrame  # user_id, age, gender, occupation
    movies: pd.DataFrame  # movie_id, title, year, genres

    @classmethod
    def from_ratings(
        cls, ratings: pd.DataFrame, users: pd.DataFrame, movies: pd.DataFrame
    ) -> TrainingData:
        """Every rated movie counts as watched (no minutes known)."""
        inter = pd.DataFrame(
            {
                "user_id": ratings["user_id"].to_numpy(),
                "movie_id": ratings["movie_id"].astype(str).to_numpy(),
                "minutes": np.zeros(len(ratings), dtype=np.int32),
                "rating": ratings["rating"].astype("float32").to_numpy(),
                "first_ts": ratings["timestamp"].to_numpy(),
                "last_ts": ratings["timestamp"].to_numpy(),
            }
        )
        return cls(ratings, inter, users, movies)

    @classmethod
    def from_interactions(
        cls, interactions: pd.DataFrame, users: pd.DataFrame, movies: pd.DataFrame
    ) -> TrainingData:
        rated = interactions.dropna(subset=["rating"])
        ratings = pd.DataFrame(
            {
                "user_id": rated["user_id"].to_numpy(),
                "movie_id": rated["movie_id"].astype(str).to_numpy(),
                "rating": rated["rating"].astype("int8").to_numpy(),
                "timestamp": rated["last_ts"].to_numpy(),
            }
        )
        return cls(ratings, interactions, users, movies)


@dataclass
class _Stage:
    """The fitted CF models and feature base of one slice of the data."""

    index: Index
    base: FeatureBase
    mf: BiasedMF
    als_u: np.ndarray
    als_i: np.ndarray
    ease: EASE
    seen: sp.csr_matrix


def _occupations(users: pd.DataFrame) -> list[str]:
    return sorted(users["occupation"].dropna().astype(str).unique())


def _fit_stage(
    data: TrainingData, index: Index, params: Mapping[str, Any], seed: int, threads: int
) -> _Stage:
    base = build_base(
        index, data.ratings, data.interactions, data.users, data.movies, _occupations(data.users)
    )
    u = index.uidx(data.ratings["user_id"].to_numpy())
    i = index.midx(data.ratings["movie_id"].to_numpy())
    r = data.ratings["rating"].to_numpy(dtype=float)
    ok = (u >= 0) & (i >= 0)
    mf = BiasedMF(params["mf_factors"], params["mf_reg"], iters=params["mf_iters"], seed=seed)
    mf.fit(u[ok], i[ok], r[ok], len(index.users), len(index.movies))
    iu = index.uidx(data.interactions["user_id"].to_numpy())
    ii = index.midx(data.interactions["movie_id"].to_numpy())
    k = (iu >= 0) & (ii >= 0)
    # confidence grows with minutes watched; never with the rating (the rating model's
    # target must not leak into an embedding it reads)
    conf = 1.0 + np.log1p(data.interactions["minutes"].to_numpy(dtype=float)[k])
    X = interaction_matrix(iu[k], ii[k], len(index.users), len(index.movies), conf)
    als_u, als_i = implicit_als(X, params["als_factors"], seed=seed, threads=threads)
    ease = EASE(params["ease_lambda"]).fit(X)
    seen = X.copy()
    seen.data[:] = 1.0
    return _Stage(index, base, mf, als_u, als_i, ease, seen)


def _cf_extra(
    stage: _Stage, u: np.ndarray, i: np.ndarray, mf: BiasedMF | None = None
) -> dict[str, np.ndarray]:
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


def _rating_extra(
    stage: _Stage, u: np.ndarray, i: np.ndarray, mf: BiasedMF | None = None
) -> dict[str, np.ndarray]:
    """The rating model's CF features: the explicit MF's values only. (The implicit ALS score
    of a training pair is in-sample - the pair is in its matrix - and would not carry over to
    unseen pairs; the ranker, whose candidates are all unseen, uses it.)"""
    extra = _cf_extra(stage, u, i, mf)
    del extra["als_score"]
    return extra


def _xgb_params(params: Mapping[str, Any], seed: int, threads: int) -> dict[str, Any]:
    return {
        "objective": "reg:squarederror",
        "eval_metric": "rmse",
        "tree_method": "hist",
        "max_depth": int(params["xgb_max_depth"]),
        "eta": float(params["xgb_eta"]),
        "subsample": float(params["xgb_subsample"]),
        "colsample_bytree": float(params["xgb_colsample"]),
        "min_child_weight": float(params["xgb_min_child_weight"]),
        "lambda": float(params["xgb_lambda"]),
        "seed": seed,
        "nthread": threads,
    }


def rating_training_matrix(
    data: TrainingData, stage: _Stage, params: Mapping[str, Any], seed: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features of the training ratings, out of fold: each fold's rows get the MF values and
    the rating statistics (user and movie means, genre deviations) of a model and a base
    built without that fold, so no feature contains the row's own rating."""
    idx = stage.index
    u = idx.uidx(data.ratings["user_id"].to_numpy())
    i = idx.midx(data.ratings["movie_id"].to_numpy())
    r = data.ratings["rating"].to_numpy(dtype=float)
    folds = np.random.default_rng(seed).integers(0, int(params["oof_folds"]), size=u.size)
    X: np.ndarray | None = None
    names: list[str] = []
    occupations = _occupations(data.users)
    for f in range(int(params["oof_folds"])):
        tr, te = folds != f, folds == f
        mf = BiasedMF(params["mf_factors"], params["mf_reg"], iters=params["mf_iters"], seed=seed)
        mf.fit(u[tr], i[tr], r[tr], len(idx.users), len(idx.movies))
        base = build_base(
            idx, data.ratings[tr], data.interactions, data.users, data.movies, occupations
        )
        Xf, names = pair_features(base, u[te], i[te], _rating_extra(stage, u[te], i[te], mf))
        if X is None:
            X = np.empty((u.size, Xf.shape[1]), dtype=np.float32)
        X[te] = Xf
    assert X is not None
    return X, r, names


class TrainedModel:
    """The fitted two-stage model: predicts ratings, recommends lists, saves and loads."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.fit_info: dict[str, Any] = {}
        self.feature_names: list[str] = []
        self.rank_feature_names: list[str] = []
        self.cold_lists: dict[str, list[str]] = {}
        self.user_segments: dict[int, str] = {}

    # ---- inference -----------------------------------------------------------------------
    def predict_ratings(
        self, user_ids: Sequence[int] | np.ndarray, movie_ids: Sequence[str] | np.ndarray
    ) -> np.ndarray:
        import xgboost as xgb

        u = self.stage.index.uidx(np.asarray(user_ids))
        i = self.stage.index.midx(np.asarray(movie_ids))
        X, _ = pair_features(self.stage.base, u, i, _rating_extra(self.stage, u, i))
        pred = self.rating_booster.predict(xgb.DMatrix(X, feature_names=self.feature_names))
        return np.clip(pred, 1.0, 5.0)

    def recommend(self, user_ids: Sequence[int] | np.ndarray, k: int = 20) -> dict[int, list[str]]:
        """Unseen movies, best first; cold-start lists for users without history."""
        users = np.asarray(user_ids)
        out: dict[int, list[str]] = {}
        known = self.stage.index.uidx(users)
        for uid in users[known < 0]:
            out[int(uid)] = self.cold_start({"user_id": int(uid)}, k)
        warm = users[known >= 0]
        for start in range(0, warm.size, 512):
            chunk = warm[start : start + 512]
            out.update(_rank_users(self, self.stage, self.stage.index.uidx(chunk), chunk, k))
        return out

    def recommend_by_rating(
        self, user_ids: Sequence[int] | np.ndarray, k: int = 20
    ) -> dict[int, list[str]]:
        """The known-poor baseline: every unseen movie ranked by predicted rating alone."""
        out = {}
        n_items = len(self.stage.index.movies)
        for uid in np.asarray(user_ids):
            u = self.stage.index.uidx(np.array([uid]))[0]
            if u < 0:
                out[int(uid)] = self.cold_start({"user_id": int(uid)}, k)
                continue
            pred = self.predict_ratings(np.full(n_items, uid), self.stage.index.movies)
            pred[self.stage.seen[u].indices] = -np.inf
            out[int(uid)] = list(self.stage.index.movies[np.argsort(-pred, kind="stable")[:k]])
        return out

    def cold_start(self, user: Mapping[str, Any] | None = None, k: int = 20) -> list[str]:
        seg = None
        if user:
            seg = user.get("segment") or self.user_segments.get(int(user.get("user_id", -1)))
            if seg is None and user.get("gender") is not None and user.get("age") is not None:
                seg = _segment(str(user["gender"]), float(user["age"]))
        return (self.cold_lists.get(seg or "") or self.cold_lists["all"])[:k]

    # ---- persistence ---------------------------------------------------------------------
    def save(self, directory: Path) -> list[str]:
        """Portable files (npz, XGBoost JSON, JSON); returns their names."""
        directory.mkdir(parents=True, exist_ok=True)
        s = self.stage
        np.savez_compressed(
            directory / "cf.npz",
            users=s.index.users,
            movies=s.index.movies.astype(str),
            mf_mu=np.array([s.mf.mu]),
            mf_bu=s.mf.bu,
            mf_bi=s.mf.bi,
            mf_P=s.mf.P,
            mf_Q=s.mf.Q,
            als_u=s.als_u,
            als_i=s.als_i,
            ease_B=s.ease.B.astype(np.float16),
            seen_indptr=s.seen.indptr,
            seen_indices=s.seen.indices,
        )
        b = s.base
        np.savez_compressed(
            directory / "features.npz",
            genres=np.array(b.genres, dtype=str),
            item_genres=b.item_genres,
            user_genre_share=b.user_genre_share,
            user_genre_dev_sum=b.user_genre_dev_sum,
            user_genre_dev_cnt=b.user_genre_dev_cnt,
            user_stats=b.user_stats,
            item_stats=b.item_stats,
            user_demo=b.user_demo,
            mu=np.array([b.mu]),
        )
        self.rating_booster.save_model(directory / "rating_model.json")
        files = ["cf.npz", "features.npz", "rating_model.json", "model.json"]
        if self.rank_booster is not None:
            self.rank_booster.save_model(directory / "ranker.json")
            files.append("ranker.json")
        (directory / "model.json").write_text(
            json.dumps(
                {
                    "params": self.params,
                    "feature_names": self.feature_names,
                    "rank_feature_names": self.rank_feature_names,
                    "cold_lists": self.cold_lists,
                    "user_segments": {str(k): v for k, v in self.user_segments.items()},
                    "fit_info": self.fit_info,
                },
                default=str,
            )
        )
        return files

    @classmethod
    def load(cls, directory: Path) -> TrainedModel:
        import xgboost as xgb

        m = cls()
        meta = json.loads((directory / "model.json").read_text())
        m.params, m.fit_info = meta["params"], meta["fit_info"]
        m.feature_names, m.rank_feature_names = meta["feature_names"], meta["rank_feature_names"]
        m.cold_lists = meta["cold_lists"]
        m.user_segments = {int(k): v for k, v in meta["user_segments"].items()}
        cf = np.load(directory / "cf.npz")
        fe = np.load(directory / "features.npz")
        index = Index(cf["users"], cf["movies"].astype(str))
        mf = BiasedMF(int(m.params["mf_factors"]))
        mf.mu, mf.bu, mf.bi, mf.P, mf.Q = (
            float(cf["mf_mu"][0]),
            cf["mf_bu"],
            cf["mf_bi"],
            cf["mf_P"],
            cf["mf_Q"],
        )
        ease = EASE(float(m.params["ease_lambda"]))
        ease.B = cf["ease_B"].astype(np.float32)
        n_u, n_i = len(index.users), len(index.movies)
        seen = sp.csr_matrix(
            (
                np.ones(cf["seen_indices"].size, dtype=np.float32),
                cf["seen_indices"],
                cf["seen_indptr"],
            ),
            shape=(n_u, n_i),
        )
        base = FeatureBase(
            index=index,
            genres=[str(g) for g in fe["genres"]],
            item_genres=fe["item_genres"],
            user_genre_share=fe["user_genre_share"],
            user_genre_dev_sum=fe["user_genre_dev_sum"],
            user_genre_dev_cnt=fe["user_genre_dev_cnt"],
            user_stats=fe["user_stats"],
            item_stats=fe["item_stats"],
            user_demo=fe["user_demo"],
            mu=float(fe["mu"][0]),
        )
        m.stage = _Stage(index, base, mf, cf["als_u"], cf["als_i"], ease, seen)
        m.rating_booster = xgb.Booster()
        m.rating_booster.load_model(directory / "rating_model.json")
        m.rank_booster = None
        if (directory / "ranker.json").exists():
            m.rank_booster = xgb.Booster()
            m.rank_booster.load_model(directory / "ranker.json")
        return m

    stage: _Stage
    rating_booster: Any
    rank_booster: Any


def _segment(gender: str, age: float) -> str:
    return f"{gender}:{int(age_group(np.array([age]))[0])}"


# ---- ranking ----------------------------------------------------------------------------------


def _candidates(stage: _Stage, u: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-n unseen movies by EASE for each user: (user rows, item idx, ease score, rank)."""
    scores = stage.ease.scores(stage.seen[u])
    seen = stage.seen[u]
    scores[seen.nonzero()] = -np.inf
    n = min(n, scores.shape[1])
    top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    top_scores = np.take_along_axis(top_scores, order, axis=1)
    return top, top_scores, np.broadcast_to(np.arange(n), top.shape)


def _rank_features(
    model: TrainedModel,
    stage: _Stage,
    rating_booster: Any,
    u: np.ndarray,
    top: np.ndarray,
    top_scores: np.ndarray,
    ranks: np.ndarray,
) -> tuple[np.ndarray, list[str]]:
    import xgboost as xgb

    uu = np.repeat(u, top.shape[1])
    ii = top.ravel()
    X_r, names_r = pair_features(stage.base, uu, ii, _rating_extra(stage, uu, ii))
    extra = _cf_extra(stage, uu, ii)
    rating = rating_booster.predict(xgb.DMatrix(X_r, feature_names=names_r))
    # a user who has seen almost everything gets seen movies (score -inf) as filler candidates
    floor = np.float32(-1e6)
    extra_rank = {
        "ease_score": np.where(np.isfinite(top_scores), top_scores, floor).ravel(),
        "ease_rank": ranks.ravel().astype(np.float32),
        "rating_pred": rating,
        **extra,
    }
    return pair_features(stage.base, uu, ii, extra_rank)


def _rank_users(
    model: TrainedModel, stage: _Stage, u: np.ndarray, user_ids: np.ndarray, k: int
) -> dict[int, list[str]]:
    import xgboost as xgb

    top, top_scores, ranks = _candidates(stage, u, int(model.params["candidates"]))
    if model.rank_booster is None:  # too little data to learn a ranker: candidate order
        scores = top_scores.copy()
    else:
        X, names = _rank_features(model, stage, model.rating_booster, u, top, top_scores, ranks)
        booster = model.rank_booster
        scores = booster.predict(xgb.DMatrix(X, feature_names=names)).reshape(top.shape)
    unseen = np.isfinite(top_scores)
    scores[~unseen] = -np.inf
    tail_share = float(model.params.get("longtail_min_share", 0.0))
    diversity = float(model.params.get("genre_diversity", 0.0))
    if tail_share > 0 or diversity > 0:
        tail = longtail_mask(stage.base)
        best = np.array(
            [
                rerank(row, tail[cand], stage.base.item_genres[cand], k, tail_share, diversity)
                for row, cand in zip(scores, top, strict=True)
            ]
        )
    else:
        best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    chosen = np.take_along_axis(top, best, axis=1)
    keep = np.take_along_axis(unseen, best, axis=1)
    return {
        int(uid): list(stage.index.movies[row[ok]])
        for uid, row, ok in zip(user_ids, chosen, keep, strict=True)
    }


# ---- mitigations of popularity bias ---------------------------------------------------------

HEAD_SHARE = 0.10  # the most-interacted 10% of movies are the "head"; the rest is the long tail


def longtail_mask(base: FeatureBase) -> np.ndarray:
    """True for movies outside the most-interacted HEAD_SHARE of the catalog."""
    popularity = base.item_stats[:, 2]
    n_head = max(1, int(np.ceil(HEAD_SHARE * popularity.size)))
    head = np.argsort(-popularity, kind="stable")[:n_head]
    mask = np.ones(popularity.size, dtype=bool)
    mask[head] = False
    return mask


def rerank(
    scores: np.ndarray,
    tail: np.ndarray,
    genres: np.ndarray,
    k: int,
    tail_share: float,
    diversity: float,
) -> np.ndarray:
    """Greedy re-ranking of one user's candidates (positions into `scores`): relevance by rank
    (1 best .. 0 worst), minus `diversity` times the share of already chosen genres the movie
    repeats; at least ceil(`tail_share` * k) long-tail movies when there are enough."""
    valid = np.isfinite(scores)
    k = min(k, scores.size)
    order = np.argsort(-scores, kind="stable")
    relevance = np.empty(scores.size)
    relevance[order] = 1.0 - np.arange(scores.size) / max(1, scores.size - 1)
    relevance[~valid] = -1e9  # seen movies only as filler, which the caller drops
    tail = tail & valid
    need_tail = min(int(np.ceil(tail_share * k)), int((tail & valid).sum()))
    per_movie = np.maximum(genres.sum(axis=1), 1.0)
    genre_count = np.zeros(genres.shape[1])
    chosen: list[int] = []
    for step in range(k):
        utility = relevance.copy()
        if diversity > 0 and step:
            utility -= diversity * (genres @ genre_count) / (per_movie * step)
        utility[chosen] = -np.inf
        if need_tail - int(tail[chosen].sum()) >= k - step:
            utility[~tail] = -np.inf
        pick = int(np.argmax(utility))
        chosen.append(pick)
        genre_count += genres[pick]
    return np.array(chosen, dtype=np.int64)


# ---- fitting ----------------------------------------------------------------------------------


def fit_rating_model(
    data: TrainingData,
    stage: _Stage,
    params: Mapping[str, Any],
    seed: int,
    threads: int,
    valid: TrainingData | None = None,
) -> tuple[Any, list[str], dict[str, Any]]:
    """XGBoost on out-of-fold features; early stopping on `valid` (or an inner 10% split)."""
    import xgboost as xgb

    X, y, names = rating_training_matrix(data, stage, params, seed)
    xp = _xgb_params(params, seed, threads)
    rng = np.random.default_rng(seed + 1)
    inner = rng.random(y.size) < 0.1
    dtrain = xgb.DMatrix(X[~inner], y[~inner], feature_names=names)
    dvalid = xgb.DMatrix(X[inner], y[inner], feature_names=names)
    booster = xgb.train(
        xp,
        dtrain,
        int(params["xgb_rounds"]),
        evals=[(dvalid, "valid")],
        early_stopping_rounds=30,
        verbose_eval=False,
    )
    best = booster.best_iteration + 1
    # refit on every row with the number of rounds early stopping chose
    final = xgb.train(xp, xgb.DMatrix(X, y, feature_names=names), best)
    return final, names, {"rounds": best, "inner_valid_rmse": float(booster.best_score)}


def _time_split(
    inter: pd.DataFrame, frac: float = 0.2, min_items: int = 5, shuffle_seed: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per user: the latest `frac` of interactions (users with enough history) as the future
    (a random `frac` with `shuffle_seed`)."""
    if shuffle_seed is not None:
        key = np.random.default_rng(shuffle_seed).random(len(inter))
        inter = inter.assign(_k=key).sort_values(["user_id", "_k"]).drop(columns="_k")
    else:
        inter = inter.sort_values(["user_id", "last_ts", "movie_id"], kind="stable")
    pos = inter.groupby("user_id").cumcount()
    size = inter.groupby("user_id")["movie_id"].transform("size")
    n_future = np.where(size >= min_items, np.maximum(1, np.floor(size * frac)), 0)
    future = pos >= size - n_future
    return inter[~future], inter[future]


def fit_ranker(
    data: TrainingData, params: Mapping[str, Any], seed: int, threads: int, max_users: int = 3000
) -> tuple[Any, list[str], dict[str, Any]]:
    """LambdaMART on EASE candidates, trained on an earlier/later split of the training data."""
    import xgboost as xgb

    past, future = _time_split(
        data.interactions, shuffle_seed=seed if params.get("ranker_split") == "random" else None
    )
    past_data = TrainingData.from_interactions(past, data.users, data.movies)
    index = Index.build(past["user_id"].to_numpy(), data.movies["movie_id"].to_numpy())
    stage = _fit_stage(past_data, index, params, seed, threads)
    small = dict(params) | {"xgb_rounds": min(200, int(params["xgb_rounds"]))}
    rating_booster, _, _ = fit_rating_model(past_data, stage, small, seed, threads)
    users = np.unique(future["user_id"].to_numpy())
    rng = np.random.default_rng(seed)
    if users.size > max_users:
        users = np.sort(rng.choice(users, max_users, replace=False))
    u = index.uidx(users)
    users, u = users[u >= 0], u[u >= 0]
    top, top_scores, ranks = _candidates(stage, u, int(params["candidates"]))
    dummy = TrainedModel()
    X, names = _rank_features(dummy, stage, rating_booster, u, top, top_scores, ranks)
    fut = future.assign(
        i=index.midx(future["movie_id"].to_numpy()), u=index.uidx(future["user_id"].to_numpy())
    )
    grade = np.where(fut["rating"].to_numpy(dtype=float) >= 4, 2.0, 1.0)
    label_of = dict(
        zip(zip(fut["u"].to_numpy(), fut["i"].to_numpy(), strict=True), grade, strict=True)
    )
    uu = np.repeat(u, top.shape[1])
    y = np.array(
        [label_of.get((a, b), 0.0) for a, b in zip(uu, top.ravel(), strict=True)], dtype=np.float32
    )
    info = {"users": int(u.size), "rows": int(y.size), "positives": int((y > 0).sum())}
    if info["positives"] < MIN_RANKER_POSITIVES:
        log.info("ranker: only %d positives, lists keep the candidate order", info["positives"])
        return None, names, info | {"fallback": "candidate order"}
    groups = np.full(u.size, top.shape[1])
    dtrain = xgb.DMatrix(X, y, feature_names=names)
    dtrain.set_group(groups)
    rank_params = {
        "objective": "rank:ndcg",
        "eval_metric": "ndcg@10",
        "lambdarank_pair_method": "topk",
        "lambdarank_num_pair_per_sample": 10,
        "tree_method": "hist",
        "max_depth": int(params["rank_max_depth"]),
        "eta": float(params["rank_eta"]),
        "subsample": 0.9,
        "colsample_bytree": 0.9,
        "min_child_weight": 1.0,
        "seed": seed,
        "nthread": threads,
    }
    booster = xgb.train(rank_params, dtrain, int(params["rank_rounds"]))
    return booster, names, info


def _cold_lists(data: TrainingData, k: int = 100) -> tuple[dict[str, list[str]], dict[int, str]]:
    r = data.ratings.merge(data.users[["user_id", "gender", "age"]], on="user_id", how="left")
    liked = r[r["rating"] >= 4]
    lists = {"all": list(liked["movie_id"].value_counts().index[:k])}
    if len(liked) and liked["gender"].notna().any():
        seg = (
            liked["gender"].astype(str)
            + ":"
            + pd.Series(age_group(liked["age"].to_numpy(dtype=float)), index=liked.index).astype(
                str
            )
        )
        for name, grp in liked.assign(seg=seg).groupby("seg"):
            if len(grp) >= 50:
                lists[str(name)] = list(grp["movie_id"].value_counts().index[:k])
    known = data.users.dropna(subset=["gender", "age"])
    segments = {
        int(uid): _segment(str(g), float(a))
        for uid, g, a in zip(known["user_id"], known["gender"], known["age"], strict=True)
    }
    if len(lists["all"]) < k:  # a tiny dataset: fill with any movie
        rest = [m for m in data.movies["movie_id"] if m not in set(lists["all"])]
        lists["all"] += rest[: k - len(lists["all"])]
    return lists, segments


def fit(
    data: TrainingData,
    settings: Settings,
    params: Mapping[str, Any] | None = None,
    tune: bool = True,
) -> TrainedModel:
    """Train the two-stage model (tuned by randomized search unless `params` is given)."""
    from movierec.model.tune import randomized_search  # the cycle the model refactor removes

    t0 = time.perf_counter()
    data = _cap_rows(data, settings.training.max_train_rows, settings.training.seed)
    info: dict[str, Any] = {"rows": len(data.ratings), "interactions": len(data.interactions)}
    chosen = dict(DEFAULT_PARAMS)
    if params:
        chosen.update(params)
    elif tune:
        best, trials = randomized_search(data, settings)
        chosen.update(best)
        info["tuning_trials"] = trials
    chosen |= {
        "longtail_min_share": settings.training.longtail_min_share,
        "genre_diversity": settings.training.genre_diversity,
    }
    model = TrainedModel()
    model.params = chosen
    seed, threads = settings.training.seed, settings.training.n_threads
    index = Index.build(data.interactions["user_id"].to_numpy(), data.movies["movie_id"].to_numpy())
    t1 = time.perf_counter()
    model.stage = _fit_stage(data, index, chosen, seed, threads)
    model.rating_booster, model.feature_names, info["rating_model"] = fit_rating_model(
        data, model.stage, chosen, seed, threads
    )
    model.rank_booster, model.rank_feature_names, info["ranker"] = fit_ranker(
        data, chosen, seed, threads
    )
    model.cold_lists, model.user_segments = _cold_lists(data)
    info["seconds_final_fit"] = round(time.perf_counter() - t1, 2)
    info["seconds_total"] = round(time.perf_counter() - t0, 2)
    model.fit_info = info
    return model


def _cap_rows(data: TrainingData, cap: int, seed: int) -> TrainingData:
    """Keep at most `cap` interactions (the most recent), to bound memory."""
    if len(data.interactions) <= cap:
        return data
    inter = data.interactions.sort_values("last_ts").iloc[-cap:]
    log.info("capped training interactions to the latest %d", cap)
    return TrainingData.from_interactions(inter, data.users, data.movies)
