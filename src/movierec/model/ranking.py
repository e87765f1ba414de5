"""The list: candidates, then a learned ranker.

Ranking unseen movies by predicted rating favours obscure movies with a few high ratings, so
the list is built in two stages: EASE proposes candidates from implicit feedback, and an
XGBoost ranker (LambdaMART, `rank:ndcg`) re-ranks them with the EASE score and rank, the ALS
score, popularity, genre affinity, recency and a rating model's prediction. The ranker learns
on a split inside the training data: generators fitted on each user's earlier interactions,
labels from their later ones (2 = rated >= 4, 1 = watched otherwise).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from movierec.data.splits import latest_per_user
from movierec.model.cf import Index
from movierec.model.data import TrainingData
from movierec.model.features import pair_features
from movierec.model.params import ModelParams
from movierec.model.rating import RatingModel, fit_rating_model
from movierec.model.rerank import choose
from movierec.model.stage import CFStage, cf_features, fit_stage

log = logging.getLogger(__name__)

# Below this many relevant (user, movie) pairs in its training split, a learned ranker is noise
# that can only spoil the candidate order; the lists then keep EASE's order.
MIN_RANKER_POSITIVES = 100
RANKER_USERS = 3000  # at most this many users' candidates train the ranker
SPLIT_FRACTION = 0.2  # each user's later 20% of interactions are the ranker's labels ...
SPLIT_MIN_ITEMS = 5  # ... for users with at least 5
SPLIT_RATING_ROUNDS = 200  # the split's rating model is a quick one


@dataclass
class Candidates:
    """Each user's top-n unseen movies by EASE (users x n): movie indexes, scores, ranks."""

    top: np.ndarray
    scores: np.ndarray  # -inf for a seen movie (filler for a user who has seen almost all)
    ranks: np.ndarray


@dataclass
class Ranker:
    """A LambdaMART booster over candidate features; None keeps the candidate order."""

    booster: xgb.Booster | None
    feature_names: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    def scores(
        self, stage: CFStage, rating: RatingModel, u: np.ndarray, cands: Candidates
    ) -> np.ndarray:
        if self.booster is None:
            return cands.scores.copy()
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


def candidates(stage: CFStage, u: np.ndarray, n: int) -> Candidates:
    """Top-n unseen movies by EASE for each user row `u`, best first."""
    seen = stage.seen[u]
    scores = stage.ease.scores(seen)
    scores[seen.nonzero()] = -np.inf
    n = min(n, scores.shape[1])
    top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    top_scores = np.take_along_axis(top_scores, order, axis=1)
    return Candidates(top, top_scores, np.broadcast_to(np.arange(n), top.shape))


def rank_features(
    stage: CFStage, rating: RatingModel, u: np.ndarray, cands: Candidates
) -> tuple[np.ndarray, list[str]]:
    """The ranker's features of every (user, candidate) pair, user by user."""
    uu = np.repeat(u, cands.top.shape[1])
    ii = cands.top.ravel()
    floor = np.float32(-1e6)  # a seen filler candidate's score
    extra = {
        "ease_score": np.where(np.isfinite(cands.scores), cands.scores, floor).ravel(),
        "ease_rank": cands.ranks.ravel().astype(np.float32),
        "rating_pred": rating.predict(stage, uu, ii),
        **cf_features(stage, uu, ii),
    }
    return pair_features(stage.base, uu, ii, extra)


def rank_users(
    stage: CFStage,
    rating: RatingModel,
    ranker: Ranker,
    params: ModelParams,
    u: np.ndarray,
    user_ids: np.ndarray,
    k: int,
) -> dict[int, list[str]]:
    """The k best unseen movies of each known user (rows `u` of the stage), best first."""
    cands = candidates(stage, u, params.candidates)
    scores = ranker.scores(stage, rating, u, cands)
    unseen = np.isfinite(cands.scores)
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
    # Split: generators see each user's earlier interactions; the later ones are the labels
    shuffle = params.seed if params.ranker_split == "random" else None
    past, future = latest_per_user(
        data.interactions, SPLIT_FRACTION, SPLIT_MIN_ITEMS, "last_ts", shuffle_seed=shuffle
    )
    past_data = TrainingData.from_interactions(past, data.users, data.movies)
    index = Index.build(past["user_id"].to_numpy(), data.movies["movie_id"].to_numpy())
    stage = fit_stage(past_data, index, params, threads)
    quick = params.replace(xgb_rounds=min(SPLIT_RATING_ROUNDS, params.xgb_rounds))
    rating = fit_rating_model(past_data, stage, quick, threads)
    # Candidates and their features, for a sample of the users with later interactions
    u = _sample_users(future, index, params.seed, max_users)
    cands = candidates(stage, u, params.candidates)
    X, names = rank_features(stage, rating, u, cands)
    # Labels, then LambdaMART (or the candidate order when there is too little to learn from)
    y = _labels(future, index, u, cands)
    info = {"users": int(u.size), "rows": int(y.size), "positives": int((y > 0).sum())}
    if info["positives"] < MIN_RANKER_POSITIVES:
        log.info("ranker: only %d positives, lists keep the candidate order", info["positives"])
        return Ranker(None, names, info | {"fallback": "candidate order"})
    return Ranker(_lambdamart(X, y, cands, params, threads, names), names, info)


def _sample_users(future: pd.DataFrame, index: Index, seed: int, max_users: int) -> np.ndarray:
    users = np.unique(future["user_id"].to_numpy())
    if users.size > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    u = index.uidx(users)
    return u[u >= 0]


def _labels(future: pd.DataFrame, index: Index, u: np.ndarray, cands: Candidates) -> np.ndarray:
    """2 for a candidate the user later rated >= 4, 1 for one they later watched, else 0."""
    fu = index.uidx(future["user_id"].to_numpy())
    fi = index.midx(future["movie_id"].to_numpy())
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
