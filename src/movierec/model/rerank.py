"""Re-ranking against popularity bias: a minimum share of long-tail movies in each list and
genre diversity, by a greedy pass over one user's ranked candidates. Both off by default."""

from __future__ import annotations

import numpy as np

from movierec.model.features import FeatureBase

HEAD_SHARE = 0.10  # the most-interacted 10% of movies are the "head"; the rest is the long tail


def longtail_mask(base: FeatureBase) -> np.ndarray:
    """True for movies outside the most-interacted HEAD_SHARE of the catalog."""
    popularity = base.item_stats[:, base.ITEM_COLS.index("i_log_pop")]
    n_head = max(1, int(np.ceil(HEAD_SHARE * popularity.size)))
    head = np.argsort(-popularity, kind="stable")[:n_head]
    mask = np.ones(popularity.size, dtype=bool)
    mask[head] = False
    return mask


def choose(
    scores: np.ndarray,
    top: np.ndarray,
    base: FeatureBase,
    k: int,
    tail_share: float,
    diversity: float,
) -> np.ndarray:
    """Positions (users x k) into each user's candidates `top` (movie indexes) with their
    `scores`: the k best, re-ranked when a long-tail share or diversity is asked for."""
    if tail_share <= 0 and diversity <= 0:
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]
    tail = longtail_mask(base)
    return np.array(
        [
            rerank(row, tail[cand], base.item_genres[cand], k, tail_share, diversity)
            for row, cand in zip(scores, top, strict=True)
        ]
    )


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
    need_tail = min(int(np.ceil(tail_share * k)), int(tail.sum()))
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
