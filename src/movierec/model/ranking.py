"""The list: candidates, then a learned ranker.

Ranking unseen movies by predicted rating favours obscure movies with a few high ratings, so
the list is built in two stages: EASE proposes candidates from implicit feedback, and an
XGBoost ranker (LambdaMART, `rank:ndcg`) re-ranks them with the EASE score and rank, the ALS
score, popularity, genre affinity, recency and a rating model's prediction. The ranker learns
on a split inside the training data: generators fitted on each user's earlier interactions,
labels from their later ones (2 = rated >= 4, 1 = watched without a rating, 0 = rated below
4 or not watched); `model.fitting` fits it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from movierec.model.cf import Pairs
from movierec.model.features import pair_features
from movierec.model.params import ModelParams
from movierec.model.rating import RatingModel
from movierec.model.rerank import choose
from movierec.model.stage import CFStage, cf_features


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
        if self.booster.feature_names is not None and self.booster.feature_names != names:
            raise ValueError(f"features {names} are not the ranker's {self.booster.feature_names}")
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
    """The ranker's features of every (user, candidate) pair, user by user. A user row of -1
    (a user the stage does not know, as fold-in serves) is an explicit unknown: `Pairs`."""
    pairs = Pairs.rows(np.repeat(u, cands.top.shape[1]), cands.top.ravel())
    floor = np.float32(-1e6)  # a seen filler candidate's score
    extra = {
        "ease_score": np.where(np.isfinite(cands.scores), cands.scores, floor).ravel(),
        "ease_rank": cands.ranks.ravel().astype(np.float32),
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
