"""The list: candidates, then a learned ranker.

Ranking unseen movies by predicted rating favours obscure movies with a few high ratings, so
the list is built in two stages. Three generators propose candidates from implicit feedback -
EASE, RP3beta (item neighbours, `cf`) and the movies most watched in the data's last days -
merged by rank relative to each one's quota (`merge`); an XGBoost ranker (LambdaMART,
`rank:ndcg`) re-ranks them with both item-item scores, the merged rank, how many generators
proposed the movie, the ALS score, popularity, genre affinity, recency and a rating model's
prediction. The ranker learns on a split inside the training data: generators fitted on each
user's earlier interactions, labels from their later ones (2 = rated >= 4, 1 = watched without
a rating, 0 = rated below 4 or not watched); `model.training.lambdamart` fits it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
import xgboost as xgb

from movierec.model.cf import Pairs
from movierec.model.features import FeatureBase, pair_features
from movierec.model.params import ModelParams
from movierec.model.rating import RatingModel, check_features
from movierec.model.rerank import choose
from movierec.model.stage import CFStage, cf_features


@dataclass
class Candidates:
    """Each user's n merged candidates (users x n), best first: movie indexes, EASE scores,
    merged ranks and the other generators' features (`merge`)."""

    top: np.ndarray
    scores: np.ndarray  # -inf for a seen movie (filler for a user who has seen almost all)
    ranks: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Ranker:
    """A LambdaMART booster over candidate features; None orders the candidates by EASE's
    score (what the lists were before the other generators and the ranker)."""

    booster: xgb.Booster | None
    feature_names: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    def scores(
        self, stage: CFStage, rating: RatingModel, u: np.ndarray, cands: Candidates
    ) -> np.ndarray:
        if self.booster is None:
            return cands.scores.copy()
        X, names = rank_features(stage, rating, u, cands)
        check_features(self.booster, names)
        # in place, without a DMatrix (see rating.predict_rows)
        return np.asarray(self.booster.inplace_predict(X)).reshape(cands.top.shape)

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


def candidates(stage: CFStage, u: np.ndarray, params: ModelParams) -> Candidates:
    """The merged candidates of each user row `u` (see `merge`)."""
    return history_candidates(stage, stage.seen[u], params)


def history_candidates(
    stage: CFStage,
    seen: sp.csr_matrix,
    params: ModelParams,
    recent: sp.csr_matrix | None = None,
    recent_weight: float = 0.0,
) -> Candidates:
    """The merged candidates of users whose histories are the rows of `seen` (users x movies,
    1 where watched): precomputed lists and answers from a history both come here, so a user
    with no new events gets exactly their precomputed candidates. EASE's scores are its
    neighbours' sums plus popularity at a negligible weight (`stage.TIE_BREAK`), which orders the
    movies no neighbour reaches. With `recent` (the same users' latest movies), their rows are
    added again, `recent_weight` times (sequence-aware fold-in; off by default)."""
    ease = stage.ease.scores_of(seen) + stage.popularity_prior[None, :]
    rp3 = stage.rp3.scores(seen)
    if recent is not None and recent_weight > 0:  # the latest movies' rows count again
        ease += recent_weight * stage.ease.scores_of(recent)
        rp3 += recent_weight * stage.rp3.scores(recent)
    return merge(ease, rp3, stage, seen.nonzero(), params)


def merge(
    ease: np.ndarray,
    rp3: np.ndarray,
    stage: CFStage,
    seen: tuple[np.ndarray, np.ndarray],
    params: ModelParams,
) -> Candidates:
    """`params.candidates` unseen movies per user (rows of `ease` and `rp3`, users x movies)
    from three generators: EASE's top `candidates`, RP3beta's top `rp3_candidates` and the
    recently popular's top `recent_candidates`. A movie's priority is its best rank relative to
    the quota of a generator that proposed it ((rank + 1) / quota): the generators' lists are
    interleaved in proportion to their quotas, each movie once. Ties, and the order among
    movies of equal priority, follow EASE's score. `seen` (rows, columns) are never proposed:
    they are set to -inf in `ease` and `rp3` themselves; a user who has seen almost everything
    gets seen filler at -inf."""
    column = FeatureBase.ITEM_COLS.index("i_recent_pop")  # log(1 + recent views)
    recent = np.asarray(stage.base.item_stats[:, column], dtype=np.float64)
    scores = {
        "ease": ease,
        "rp3": rp3,
        "recent": np.repeat(recent[None, :], ease.shape[0], axis=0),
    }
    for name in scores:
        scores[name][seen] = -np.inf
    quotas = {
        "ease": params.candidates,
        "rp3": params.rp3_candidates,
        "recent": params.recent_candidates,
    }
    priority = np.full(ease.shape, np.inf)
    proposed = np.zeros(ease.shape, dtype=np.float32)
    for name, quota in quotas.items():
        top, top_scores = _best(scores[name], quota)
        rank = np.where(np.isfinite(top_scores), (np.arange(top.shape[1]) + 1.0) / quota, np.inf)
        np.put_along_axis(
            priority, top, np.minimum(np.take_along_axis(priority, top, axis=1), rank), axis=1
        )
        np.put_along_axis(proposed, top, np.take_along_axis(proposed, top, axis=1) + 1, axis=1)
    n = min(params.candidates, ease.shape[1])
    top = np.argpartition(priority, n - 1, axis=1)[:, :n]
    order = np.lexsort(
        (-np.take_along_axis(ease, top, axis=1), np.take_along_axis(priority, top, axis=1)),
        axis=1,
    )
    top = np.take_along_axis(top, order, axis=1)
    features = {
        "rp3_score": np.take_along_axis(np.where(np.isfinite(rp3), rp3, 0.0), top, axis=1),
        "generators": np.take_along_axis(proposed, top, axis=1),
    }
    ranks = np.broadcast_to(np.arange(n), top.shape)
    return Candidates(top, np.take_along_axis(ease, top, axis=1), ranks, features)


def _best(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k best columns, best first, and their scores."""
    k = min(k, scores.shape[1])
    if k <= 0:
        return np.empty((scores.shape[0], 0), np.int64), np.empty((scores.shape[0], 0))
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)


def rank_features(
    stage: CFStage, rating: RatingModel, u: np.ndarray, cands: Candidates
) -> tuple[np.ndarray, list[str]]:
    """The ranker's features of every (user, candidate) pair, user by user. A user row of -1
    (a user the stage does not know, as fold-in serves) is an explicit unknown: `Pairs`."""
    pairs = Pairs.rows(np.repeat(u, cands.top.shape[1]), cands.top.ravel())
    floor = np.float32(-1e6)  # a seen filler candidate's score
    extra = {
        "ease_score": np.where(np.isfinite(cands.scores), cands.scores, floor).ravel(),
        "candidate_rank": cands.ranks.ravel().astype(np.float32),
        **{name: values.ravel().astype(np.float32) for name, values in cands.features.items()},
        "rating_pred": rating.predict(stage, pairs),
        **cf_features(stage, pairs),
    }
    return pair_features(stage.base, pairs, extra)


class ListModel(NamedTuple):
    """What makes the lists: the CF stage, the rating model, the ranker and the knobs."""

    stage: CFStage
    rating: RatingModel
    ranker: Ranker
    params: ModelParams


def rank_users(
    model: ListModel, u: np.ndarray, user_ids: np.ndarray, k: int
) -> dict[int, list[str]]:
    """The k best unseen movies of each user with history (rows `u` of the stage), best
    first."""
    stage = model.stage
    cands = candidates(stage, u, model.params)
    chosen = rank_candidates(model, u, cands, k)
    return {
        int(uid): list(stage.index.movies[row]) for uid, row in zip(user_ids, chosen, strict=True)
    }


def rank_candidates(model: ListModel, u: np.ndarray, cands: Candidates, k: int) -> list[np.ndarray]:
    """Each user's k best unseen candidates (movie positions), best first: the ranker's order,
    then the re-ranking knobs; seen filler is never chosen. Precomputed lists and fold-in both
    end here."""
    stage, rating, ranker, params = model
    scores = ranker.scores(stage, rating, u, cands)
    unseen = np.isfinite(cands.scores)
    scores[~unseen] = -np.inf
    best = choose(
        scores, cands.top, stage.base, k, params.longtail_min_share, params.genre_diversity
    )
    chosen = np.take_along_axis(cands.top, best, axis=1)
    keep = np.take_along_axis(unseen, best, axis=1)
    return [row[ok] for row, ok in zip(chosen, keep, strict=True)]
