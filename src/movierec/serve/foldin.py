"""Fold-in at request time: a list recomputed from a user's whole history - what the model
trained on plus what the online store saw since - with every movie of that history removed.

For the two-stage model, as its precomputed lists are made: candidates merged from the
generators (EASE's item-item scores from the bundle's neighbours, `registry.serving`;
RP3beta's, the model's own sparse rows; the recently popular), re-ranked by the bundle's XGBoost
ranker (LambdaMART over the stacked rating model's prediction and the pair features), then the
model's re-ranking knobs. A user the model does not know gets the same pipeline with unknown
user features, so a personal list from their first watch. The rank-by-rating variant (the
demo's deliberately poor model) ranks every movie outside the history by predicted rating, as
its precomputed lists do.

Everything is read from the bundle memory-mapped (`mmap_mode="r"`), never training code: the
workers share the pages. A list depends only on the set of movies in the history, so each is
kept in a small per-worker LRU cache keyed by (user, movies): a user's next requests cost a
lookup until they watch something new.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from movierec.core.errors import ModelLoadError
from movierec.core.schema import MODEL_JSON, RANKER, RATING_MODEL, VARIANT_JSON
from movierec.model.params import ModelParams
from movierec.model.ranking import Ranker, merge, rank_candidates
from movierec.model.rating import RatingModel
from movierec.model.stage import CFStage
from movierec.registry.serving import Neighbours, check_neighbours

TIE_BREAK = 1e-6  # popularity's weight among candidates of equal item-item score


@dataclass
class FoldIn:
    """A bundle's model as serving uses it: lists for a user from their whole history."""

    params: ModelParams
    stage: CFStage
    rating: RatingModel
    ranker: Ranker
    neighbours: Neighbours
    by_rating: bool = False  # the rank-by-rating variant
    cache_size: int = 10_000
    _prior: np.ndarray = field(init=False, repr=False)
    _cache: OrderedDict[tuple[int, frozenset[str]], tuple[int, list[str]]] = field(
        init=False, repr=False, default_factory=OrderedDict
    )
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        pop = np.asarray(self.stage.base.item_stats[:, 2], dtype=np.float64)  # log popularity
        self._prior = TIE_BREAK * pop / max(float(pop.max(initial=0.0)), 1.0)
        for booster in (*self.rating.boosters.values(), self.ranker.booster):
            if booster is not None:
                booster.set_param({"nthread": 1})  # the worker's threads run requests side by side

    @classmethod
    def load(cls, directory: Path, cache_size: int = 10_000) -> FoldIn | None:
        """The bundle's model, memory-mapped; None for a bundle without one (lists only)."""
        if not (directory / MODEL_JSON).exists() or not Neighbours.saved_in(directory):
            return None
        try:
            meta = json.loads((directory / MODEL_JSON).read_text())
            params = ModelParams.from_dict(meta["params"])
            stage = CFStage.load(directory, meta["stage"], params, mmap=True)
            rating = RatingModel.load(directory, RATING_MODEL, meta["feature_names"])
            ranker = Ranker.load(directory / RANKER, meta["rank_feature_names"])
            neighbours = Neighbours.load(directory, mmap=True)
        except (OSError, KeyError, ValueError) as exc:
            raise ModelLoadError(f"{directory}: unreadable model for fold-in ({exc})") from None
        check_neighbours(neighbours, len(stage.index.movies), directory)
        by_rating = (directory / VARIANT_JSON).exists()
        return cls(params, stage, rating, ranker, neighbours, by_rating, cache_size)

    def recommend(self, user_id: int, recent: Sequence[str], k: int) -> list[str]:
        """Up to k movies for the user, none of them in their history (trained or `recent`)."""
        key = (user_id, frozenset(recent))
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] >= k:  # made for k movies or more
                self._cache.move_to_end(key)
                return cached[1] if cached[0] == k else cached[1][:k]
        chosen = self._compute(user_id, recent, k)
        if self.cache_size > 0:
            with self._lock:
                self._cache[key] = (k, chosen)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return chosen

    def history(self, user_id: int, recent: Sequence[str]) -> tuple[int, np.ndarray]:
        """The user's row in the model (-1: unknown) and their movies' positions."""
        index = self.stage.index
        u = int(index.uidx(np.array([user_id]))[0])
        new = index.midx(np.asarray(recent, dtype=str)) if len(recent) else np.empty(0, np.int64)
        trained = np.empty(0, dtype=np.int64)
        if u >= 0:
            seen = self.stage.seen
            trained = np.asarray(seen.indices[seen.indptr[u] : seen.indptr[u + 1]], np.int64)
        return u, np.union1d(trained, new[new >= 0])

    def _compute(self, user_id: int, recent: Sequence[str], k: int) -> list[str]:
        u, history = self.history(user_id, recent)
        if self.by_rating:
            return self._by_rating(user_id, history, k)
        # Candidates: the generators' scores of the whole history, the history itself removed
        ease = self.neighbours.fold_in(history) + self._prior
        rp3 = self.stage.rp3.W.fold_in(history)
        if ease.size - history.size <= 0:
            return []
        seen = (np.zeros(history.size, dtype=np.int64), history)
        cands = merge(ease[None, :], rp3[None, :], self.stage, seen, self.params)
        # Ranking: the bundle's LambdaMART, then its re-ranking knobs
        p = self.params
        best = rank_candidates(self.stage, self.rating, self.ranker, p, np.array([u]), cands, k)
        return [str(m) for m in self.stage.index.movies[best[0]]]

    def _by_rating(self, user_id: int, history: np.ndarray, k: int) -> list[str]:
        movies = self.stage.index.movies
        pairs = self.stage.pairs(np.full(len(movies), user_id), movies)
        pred = np.clip(self.rating.predict(self.stage, pairs), 1.0, 5.0)
        pred[history] = -np.inf
        order = np.argsort(-pred, kind="stable")[: min(k, len(movies) - history.size)]
        return [str(m) for m in movies[order]]
