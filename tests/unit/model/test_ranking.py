"""Candidates and the ranker: unseen candidates best first, graded labels, and the candidate
order kept when the training split has too few positives to learn from."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from movierec.model.cf import Index, RP3beta
from movierec.model.ranking import Candidates, ListModel, candidates, merge, rank_users
from movierec.model.recommender import TwoStageModel
from movierec.model.training.lambdamart import MIN_RANKER_POSITIVES, _labels, fit_ranker
from tests.modelkit import FAST, block_data


def test_candidates_are_unseen_and_distinct(block_model: TwoStageModel) -> None:
    stage = block_model.stage
    u = np.arange(20)
    cands = candidates(stage, u, FAST.replace(candidates=4))
    assert cands.top.shape == (20, 4)
    seen = stage.seen[u].toarray() > 0
    assert not np.take_along_axis(seen, cands.top, axis=1).any()
    assert all(len(set(row)) == 4 for row in cands.top.tolist())
    assert cands.ranks[0].tolist() == [0, 1, 2, 3]
    assert set(cands.features) == {"rp3_score", "generators"}


def test_merge_interleaves_the_generators_by_rank_relative_to_their_quotas() -> None:
    # movie 0 seen; EASE's top 3: 1, 2, 3 (priorities 1/3, 2/3, 1); RP3beta's top 2: 5, 4
    # (1/2, 1); the recently popular's top 1: 5 (1) -> 1 (1/3), 5 (1/2, two generators), 2
    ease = np.array([[6.0, 5, 4, 3, 2, 1]])
    rp3 = np.array([[0.0, 0, 0, 0, 1, 2]])
    stats = np.zeros((6, 7))
    stats[5, 6] = 9.0  # log(1 + recent views)
    stage = SimpleNamespace(base=SimpleNamespace(item_stats=stats))
    params = FAST.replace(candidates=3, rp3_candidates=2, recent_candidates=1)
    seen = (np.array([0]), np.array([0]))
    cands = merge(ease, rp3, stage, seen, params)  # type: ignore[arg-type]
    assert cands.top.tolist() == [[1, 5, 2]]
    assert cands.scores.tolist() == [[5.0, 1.0, 4.0]]
    assert cands.features["generators"].tolist() == [[1.0, 2.0, 1.0]]
    assert cands.features["rp3_score"].tolist() == [[0.0, 2.0, 0.0]]


def test_rp3beta_walks_item_user_item_and_discounts_popular_destinations() -> None:
    # users: 0 watched movies 0 and 1; 1 watched 0 and 2. From movie 1: to user 0 (P = 1),
    # then to 0 or 1 (1/2 each); movie 0 has 2 viewers, so its weight is 1/2 / 2^beta
    X = sp.csr_matrix(np.array([[1.0, 1, 0], [1, 0, 1]]))
    W = RP3beta(beta=1.0, k=2).fit(X).W
    dense = sp.csr_matrix((W.scores, W.indices, W.indptr), shape=(3, 3)).toarray()
    np.testing.assert_allclose(dense[1], [0.25, 0.0, 0.0])  # the diagonal is never kept
    np.testing.assert_allclose(dense[0], [0.0, 0.25, 0.25])  # 1/2 * 1/2 / 1
    np.testing.assert_allclose(W.fold_in(np.array([1, 2])), [0.5, 0.0, 0.0])


def test_labels_grade_later_liked_ratings_and_unrated_watches_never_low_ratings() -> None:
    index = Index.build(np.array([1, 2]), np.array(["a", "b", "c"], dtype=object))
    future = pd.DataFrame(
        {"user_id": [1, 1, 2], "movie_id": ["a", "b", "c"], "rating": [5.0, np.nan, 2.0]}
    )
    top = np.array([[0, 1, 2], [2, 0, 1]])
    cands = Candidates(top, np.zeros((2, 3)), np.zeros((2, 3)))
    stage = SimpleNamespace(index=index)
    y = _labels(future, stage, np.array([0, 1]), cands)  # type: ignore[arg-type]
    assert y.tolist() == [2.0, 1.0, 0.0, 0.0, 0.0, 0.0]


def test_too_few_positives_order_the_candidates_by_ease(
    block_ratings: pd.DataFrame, block_model: TwoStageModel
) -> None:
    ranker = fit_ranker(block_data(block_ratings), FAST, threads=1)
    assert ranker.info["positives"] < MIN_RANKER_POSITIVES
    assert ranker.booster is None and ranker.info["fallback"] == "EASE order"
    stage, parts = block_model.stage, block_model.parts
    u = np.arange(3)
    lists = rank_users(ListModel(stage, parts.rating, ranker, FAST), u, stage.index.users[u], 3)
    cands = candidates(stage, u, FAST)
    for row, uid in enumerate(stage.index.users[u]):
        by_ease = cands.top[row, np.argsort(-cands.scores[row], kind="stable")[:3]]
        assert lists[int(uid)] == list(stage.index.movies[by_ease])
