"""Re-ranking: off keeps the order; a long-tail share and genre diversity are enforced."""

from __future__ import annotations

import numpy as np

from movierec.model.recommender import TwoStageModel
from movierec.model.rerank import HEAD_SHARE, choose, longtail_mask, rerank


def test_reranking_keeps_the_order_when_off_and_enforces_long_tail_and_diversity() -> None:
    rng = np.random.default_rng(3)
    scores = np.sort(rng.random(40))[::-1].copy()
    tail = np.zeros(40, dtype=bool)
    tail[30:] = True  # the long tail sits at the bottom of the scores
    genres = np.zeros((40, 4))
    genres[:20, 0] = 1  # the 20 best all share one genre
    genres[20:, 1 + np.arange(20) % 3] = 1
    plain = rerank(scores, tail, genres, 10, 0.0, 0.0)
    assert plain.tolist() == list(range(10))
    with_tail = rerank(scores, tail, genres, 10, 0.3, 0.0)
    assert tail[with_tail].sum() == 3 and with_tail[:7].tolist() == list(range(7))
    diverse = rerank(scores, tail, genres, 10, 0.0, 1.0)
    assert len(set(diverse.tolist())) == 10
    assert (genres[diverse].sum(axis=0) > 0).sum() == 4 > (genres[plain].sum(axis=0) > 0).sum()
    seen = scores.copy()
    seen[:35] = -np.inf  # only 5 valid candidates: they come first, then filler
    assert set(rerank(seen, tail, genres, 10, 0.5, 0.5)[:5].tolist()) == set(range(35, 40))


def test_the_head_is_the_most_interacted_tenth(block_model: TwoStageModel) -> None:
    base = block_model.stage.base
    tail = longtail_mask(base)
    n_head = int(np.ceil(HEAD_SHARE * tail.size))
    assert (~tail).sum() == n_head
    popularity = base.item_stats[:, 2]
    assert popularity[~tail].min() >= popularity[tail].max()


def test_choose_without_knobs_is_the_plain_order(block_model: TwoStageModel) -> None:
    base = block_model.stage.base
    scores = np.array([[0.1, 0.9, 0.5], [3.0, 2.0, 1.0]])
    top = np.array([[0, 1, 2], [3, 4, 5]])
    assert choose(scores, top, base, 2, 0.0, 0.0).tolist() == [[1, 2], [0, 1]]
    assert choose(scores, top, base, 2, 0.0, 0.5).shape == (2, 2)
