"""Fitting the LambdaMART ranker (`model.ranking.Ranker`): a stage and a quick rating model
fitted on the earlier part of the training data, the candidates they give a sample of users,
labelled by what those users did in the later part.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from movierec.data.splits import latest_per_user, time_cut
from movierec.model.params import ModelParams
from movierec.model.ranking import Candidates, Ranker, candidates, rank_features
from movierec.model.stage import CFStage
from movierec.model.training.cf_stage import build_index, fit_stage
from movierec.model.training.cluster import BoosterData, BoosterRun, Engine, InProcess
from movierec.model.training.dataset import TrainingData
from movierec.model.training.rating_fit import fit_rating_model

log = logging.getLogger(__name__)

# Below this many relevant (user, movie) pairs in its training split, a learned ranker is noise
# that can only spoil the candidate order; the lists then keep EASE's order.
MIN_RANKER_POSITIVES = 100
RANKER_USERS = 3000  # at most this many users' candidates train the ranker
SPLIT_FRACTION = 0.2  # the later 20% of the training data are the ranker's labels ...
SPLIT_MIN_ITEMS = 5  # ... (per user: for users with at least 5 interactions)
SPLIT_RATING_ROUNDS = 200  # the split's rating model is a quick one


def fit_ranker(
    data: TrainingData,
    params: ModelParams,
    threads: int,
    max_users: int = RANKER_USERS,
    engine: Engine | None = None,
) -> Ranker:
    """LambdaMART on candidates, trained on an earlier/later split of the training data (the
    split's rating model and the booster on `engine`)."""
    engine = engine or InProcess()
    # Split: generators see the earlier interactions; the later ones are the labels
    past, future = ranker_split(data.interactions, params)
    past_data = TrainingData.from_interactions(past, data.users, data.movies)
    stage = fit_stage(past_data, build_index(past_data), params, threads)
    quick = params.replace(xgb_rounds=min(SPLIT_RATING_ROUNDS, params.xgb_rounds))
    rating = fit_rating_model(past_data, stage, quick, threads, engine)
    # Candidates and their features, for a sample of the users with history and a future
    u = _sample_users(future, stage, params.seed, max_users)
    cands = candidates(stage, u, params)
    X, names = rank_features(stage, rating, u, cands)
    # Labels, then LambdaMART (or EASE's order when there is too little to learn from)
    y = _labels(future, stage, u, cands)
    positives = int((y > 0).sum())
    info = {"split": params.ranker_split, "users": int(u.size), "rows": int(y.size)}
    info["positives"] = positives
    info["candidate_recall"] = round(positives / max(_later_positives(future, stage, u), 1), 4)
    if positives < MIN_RANKER_POSITIVES:
        log.info("ranker: only %d positives, lists keep EASE's order", positives)
        return Ranker(None, names, info | {"fallback": "EASE order"})
    rows = BoosterData(X, y, names, qid=np.repeat(np.arange(u.size), cands.top.shape[1]))
    return Ranker(engine.train_booster(rows, _lambdamart(params, threads)), names, info)


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
    """2 for a candidate the user later rated >= 4, 1 for one they later watched without
    rating it, else 0: a later rating below 4 is what the lists' metric calls irrelevant, as
    an unwatched movie is (graded 1, it taught the ranker to favour them: ml-100k random
    80/20, untuned, NDCG@10 0.3676 with 0, 0.3626 with 1)."""
    fu = stage.index.uidx(future["user_id"].to_numpy())
    fi = stage.index.midx(future["movie_id"].to_numpy())
    rating = future["rating"].to_numpy(dtype=float)
    grade = np.where(rating >= 4, 2.0, np.where(np.isnan(rating), 1.0, 0.0))
    label_of = dict(zip(zip(fu, fi, strict=True), grade, strict=True))
    uu = np.repeat(u, cands.top.shape[1])
    pairs = zip(uu, cands.top.ravel(), strict=True)
    return np.array([label_of.get((a, b), 0.0) for a, b in pairs], dtype=np.float32)


def _later_positives(future: pd.DataFrame, stage: CFStage, u: np.ndarray) -> int:
    """How many (user, movie) pairs of users `u` the labels grade above 0 - in the candidates
    or not: the denominator of the candidates' recall."""
    fu = stage.index.uidx(future["user_id"].to_numpy())
    fi = stage.index.midx(future["movie_id"].to_numpy())
    rating = future["rating"].to_numpy(dtype=float)
    positive = np.isin(fu, u) & (fi >= 0) & ~(rating < 4)
    return int(np.unique(fu[positive] * len(stage.index.movies) + fi[positive]).size)


def _lambdamart(params: ModelParams, threads: int) -> BoosterRun:
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
    return BoosterRun(rank_params, params.rank_rounds)
