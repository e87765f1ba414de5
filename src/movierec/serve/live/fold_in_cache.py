"""Fold-in at request time, the serving side: `FoldInCache` asks the bundle's model for the
list of a user's whole history (`Recommender.recommend_from_history`: what the model trained
on plus what the online store saw since) and keeps the answer.

The list is the model's own answer, computed in `model.recommender`; this module only loads the
model for serving (memory-mapped, `mmap_mode="r"`, so the workers share the pages; one thread
per booster, because a worker's threads answer requests side by side) and caches. A list
depends only on the set of movies in the history, so each is kept in a small per-worker LRU
cache keyed by (user, movies): a user's next requests cost a lookup until they watch something
new.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from movierec.model.recommender import Recommender, load_recommender, saved_in

_Key = tuple[int, frozenset[str]]


class FoldInCache:
    """A bundle's model as serving uses it: lists from a user's whole history, cached."""

    def __init__(self, model: Recommender, cache_size: int = 10_000) -> None:
        self.model = model
        self.cache_size = cache_size
        self._cache: OrderedDict[_Key, tuple[int, list[str]]] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, directory: Path, cache_size: int = 10_000) -> FoldInCache | None:
        """The bundle's model, memory-mapped; None for a bundle without one (lists only).
        Raises `ModelLoadError` for files it cannot read."""
        if not saved_in(directory):
            return None
        return cls(load_recommender(directory, mmap=True, threads=1), cache_size)

    def recommend(self, user_id: int, recent: Sequence[str], k: int) -> list[str]:
        """Up to k movies for the user, none of them in their history (trained or `recent`)."""
        key = (user_id, frozenset(recent))
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] >= k:  # made for k movies or more
                self._cache.move_to_end(key)
                return cached[1] if cached[0] == k else cached[1][:k]
        chosen = self.model.recommend_from_history(user_id, recent, k)
        if self.cache_size > 0:
            with self._lock:
                self._cache[key] = (k, chosen)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return chosen
