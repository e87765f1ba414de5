"""The list: candidates from several generators, then a learned ranker.

Ranking unseen movies by predicted rating favours obscure movies with a few high ratings, so
the list is built in two stages. Four generators score every unseen movie - EASE and RP3beta
(item-item, from what the user watched), implicit ALS (embeddings) and recent popularity -
and their ranks are fused (reciprocal rank fusion) into one candidate list per user. An
XGBoost ranker (LambdaMART, `rank:ndcg`) re-ranks the candidates with every generator's score
and rank, EASE on the user's latest interactions alone, popularity and recency, genre
affinity, the CF features and a rating model's prediction. The ranker learns on a split inside
the training data (`ModelParams.ranker_split`): generators fitted on the earlier part, labels
from the later one (2 = rated >= 4, 1 = watched otherwise).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from movierec.data.splits import latest_per_user, time_cut
from movierec.model.cf import Pairs
from movierec.model.data import TrainingData
from movierec.model.features import pair_features
from movierec.model.params import ModelParams
from movierec.model.rating import RatingModel, fit_rating_model
from movierec.model.rerank import choose
from movierec.model.stage import CFStage, build_index, cf_features, fit_stage

log = logging.getLogger(__name__)

# Below this many relevant (user, movie) pairs in its training split, a learned ranker is noise
# that can only spoil the candidate order; the lists then keep the fused order.
MIN_RANKER_POSITIVES = 100
RANKER_USERS = 3000  # at most this many users' candidates train the ranker
SPLIT_FRACTION = 0.2  # the later 20% of the training data are the ranker's labels ...
SPLIT_MIN_ITEMS = 5  # ... (per user: for users with at least 5 interactions)
SPLIT_RATING_ROUNDS = 200  # the split's rating model is a quick one
RRF_K = 60.0  # reciprocal rank fusion: a generator's rank r adds weight / (RRF_K + r)
GENERATOR_WEIGHTS = {"ease": 1.0, "rp3": 1.0, "als": 0.5, "recent": 0.5}


@dataclass
class Candidates:
    """Each user's top-n unseen movies by fused rank (users x n): movie rows, the fused score
    (-inf for a seen movie, filler for a user who has seen almost everything) and every
    generator's score and rank of them."""

    top: np.ndarray
    fused: np.ndarray
    features: dict[str, np.ndarray]

    @property
    def unseen(self) -> np.ndarray:
        return np.isfinite(self.fused)


@dataclass
class Ranker:
    """A LambdaMART booster over candidate features; None keeps the fused order."""

    booster: xgb.Booster | None
    feature_names: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    def scores(
        self, stage: CFStage, rating: RatingModel, u: np.ndarray, cands: Candidates
    ) -> np.ndarray:
        if self.booster is None:
            return cands.fused.copy()
        X, names = rank_features(stage, rating, u, cands)
        return self.booster.predict(xgb.DMatrix(X, feature_names=names)).reshape(cands.top.shape)

    def save(self, path: Path) -> bool:
        """Writes the booster, if there is one; says whether it did."""
        if self.booster is None:
            return False
        self.booster.save_model(path)
        return True

    @classmethod
    def load(cls, path: Path, feature_names: list[str]) -> Ranker:
        if not path.exists():
            return cls(None, feature_names)
        booster = xgb.Booster()
        booster.load_model(path)
        return cls(booster, feature_names)


def generator_scores(stage: CFStage, u: np.ndarray) -> dict[str, np.ndarray]:
    """Every generator's score of every movie for user rows `u` (users x movies), -inf where
    the user has seen the movie."""
    seen = stage.seen[u]
    recent = stage.base.item_stats[:, 6].astype(np.float32)
    scores = {
        "ease": stage.ease.scores(seen),
        "rp3": stage.rp3.scores(seen),
        "als": np.asarray(stage.als_u[u] @ stage.als_i.T, dtype=np.float32),
        "recent": np.repeat(recent[None, :], u.size, axis=0),
    }
    rows, cols = seen.nonzero()
    for values in scores.values():
        values[rows, cols] = -np.inf
    return scores


def _ranks(scores: np.ndarray) -> np.ndarray:
    """0 for each row's best column, 1 for the next..."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(scores.shape[1])[None, :], axis=1)
    return ranks


def candidates(stage: CFStage, u: np.ndarray, n: int) -> Candidates:
    """Top-n unseen movies by fused generator rank for each user row `u`, best first."""
    scores = generator_scores(stage, u)
    ranks = {name: _ranks(values) for name, values in scores.items()}
    fused = sum(w / (RRF_K + ranks[name]) for name, w in GENERATOR_WEIGHTS.items())
    assert isinstance(fused, np.ndarray)
    fused[~np.isfinite(scores["ease"])] = -np.inf
    n = min(n, fused.shape[1])
    top = np.argpartition(-fused, n - 1, axis=1)[:, :n]
    order = np.argsort(-np.take_along_axis(fused, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    features: dict[str, np.ndarray] = {"fused_rank": np.broadcast_to(np.arange(n), top.shape)}
    floor = np.float32(-1e6)  # a seen filler candidate's score
    for name in scores:
        picked = np.take_along_axis(scores[name], top, axis=1)
        features[f"{name}_score"] = np.where(np.isfinite(picked), picked, floor)
        features[f"{name}_rank"] = np.take_along_axis(ranks[name], top, axis=1)
    features["ease_latest"] = _latest_ease(stage, u, top)
    return Candidates(top, np.take_along_axis(fused, top, axis=1), features)


def _latest_ease(stage: CFStage, u: np.ndarray, top: np.ndarray) -> np.ndarray:
    """EASE's score of each candidate from the user's latest interactions alone."""
    latest = np.asarray(stage.latest[u] @ stage.ease.B, dtype=np.float32)
    return np.take_along_axis(latest, top, axis=1)


def rank_features(
    stage: CFStage, rating: RatingModel, u: np.ndarray, cands: Candidates
) -> tuple[np.ndarray, list[str]]:
    """The ranker's features of every (user, candidate) pair, user by user."""
    pairs = Pairs.rows(np.repeat(u, cands.top.shape[1]), cands.top.ravel())
    extra = {
        **{name: values.ravel().astype(np.float32) for name, values in cands.features.items()},
        "rating_pred": rating.predict(stage, pairs),
        **cf_features(stage, pairs),
    }
    return pair_features(stage.base, pairs, extra)


def rank_users(
    stage: CFStage,
    rating: RatingModel,
    ranker: Ranker,
    params: ModelParams,
    u: np.ndarray,
    user_ids: np.ndarray,
    k: int,
) -> dict[int, list[str]]:
    """The k best unseen movies of each user with history (rows `u` of the stage), best
    first."""
    cands = candidates(stage, u, params.candidates)
    scores = ranker.scores(stage, rating, u, cands)
    unseen = cands.unseen
    scores[~unseen] = -np.inf
    best = choose(
        scores, cands.top, stage.base, k, params.longtail_min_share, params.genre_diversity
    )
    chosen = np.take_along_axis(cands.top, best, axis=1)
    keep = np.take_along_axis(unseen, best, axis=1)
    return {
        int(uid): list(stage.index.movies[row[ok]])
        for uid, row, ok in zip(user_ids, chosen, keep, strict=True)
    }


def fit_ranker(
    data: TrainingData, params: ModelParams, threads: int, max_users: int = RANKER_USERS
) -> Ranker:
    """LambdaMART on candidates, trained on an earlier/later split of the training data."""
    # Split: generators see the earlier interactions; the later ones are the labels
    past, future = ranker_split(data.interactions, params)
    past_data = TrainingData.from_interactions(past, data.users, data.movies)
    stage = fit_stage(past_data, build_index(past_data), params, threads)
    quick = params.replace(xgb_rounds=min(SPLIT_RATING_ROUNDS, params.xgb_rounds))
    rating = fit_rating_model(past_data, stage, quick, threads)
    # Candidates and their features, for a sample of the users with history and a future
    u = _sample_users(future, stage, params.seed, max_users)
    cands = candidates(stage, u, params.candidates)
    X, names = rank_features(stage, rating, u, cands)
    # Labels, then LambdaMART (or the fused order when there is too little to learn from)
    y = _labels(future, stage, u, cands)
    positives = int((y > 0).sum())
    info = {"split": params.ranker_split, "users": int(u.size), "rows": int(y.size)}
    info["positives"] = positives
    if positives < MIN_RANKER_POSITIVES:
        log.info("ranker: only %d positives, lists keep the fused order", positives)
        return Ranker(None, names, info | {"fallback": "fused candidate order"})
    return Ranker(_lambdamart(X, y, cands, params, threads, names), names, info)


def ranker_split(
    interactions: pd.DataFrame, params: ModelParams
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(earlier, later) interactions: a random share of each user's, each user's latest share,
    or everything after a global time cut."""
    if params.ranker_split == "global_time":
        return time_cut(interactions, SPLIT_FRACTION, "last_ts")
    shuffle = params.seed if params.ranker_split == "random" else None
    return latest_per_user(
        interactions, SPLIT_FRACTION, SPLIT_MIN_ITEMS, "last_ts", shuffle_seed=shuffle
    )


def _sample_users(future: pd.DataFrame, stage: CFStage, seed: int, max_users: int) -> np.ndarray:
    """Rows of the users with history in `stage` and interactions in `future`."""
    u = stage.index.uidx(np.unique(future["user_id"].to_numpy()))
    u = np.intersect1d(u[u >= 0], stage.users_with_history())
    if u.size > max_users:
        u = np.sort(np.random.default_rng(seed).choice(u, max_users, replace=False))
    return u


def _labels(future: pd.DataFrame, stage: CFStage, u: np.ndarray, cands: Candidates) -> np.ndarray:
    """2 for a candidate the user later rated >= 4, 1 for one they later watched, else 0."""
    fu = stage.index.uidx(future["user_id"].to_numpy())
    fi = stage.index.midx(future["movie_id"].to_numpy())
    grade = np.where(future["rating"].to_numpy(dtype=float) >= 4, 2.0, 1.0)
    label_of = dict(zip(zip(fu, fi, strict=True), grade, strict=True))
    uu = np.repeat(u, cands.top.shape[1])
    pairs = zip(uu, cands.top.ravel(), strict=True)
    return np.array([label_of.get((a, b), 0.0) for a, b in pairs], dtype=np.float32)


def _lambdamart(
    X: np.ndarray,
    y: np.ndarray,
    cands: Candidates,
    params: ModelParams,
    threads: int,
    names: list[str],
) -> xgb.Booster:
    dtrain = xgb.DMatrix(X, y, feature_names=names)
    dtrain.set_group(np.full(cands.top.shape[0], cands.top.shape[1]))
    rank_params = {
        "objective": "rank:ndcg",
        "eval_metric": "ndcg@10",
        "lambdarank_pair_method": "topk",
        "lambdarank_num_pair_per_sample": 10,
        "tree_method": "hist",
        "max_depth": int(params.rank_max_depth),
        "eta": float(params.rank_eta),
        "subsample": 0.9,
        "colsample_bytree": 0.9,
        "min_child_weight": 1.0,
        "seed": params.seed,
        "nthread": threads,
    }
    return xgb.train(rank_params, dtrain, params.rank_rounds)
