"""Candidates and the ranker: unseen candidates best first, graded labels, and the candidate
order kept when the training split has too few positives to learn from."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from movierec.model.cf import Index
from movierec.model.fitting import MIN_RANKER_POSITIVES, _labels, fit_ranker
from movierec.model.ranking import Candidates, candidates, rank_users
from movierec.model.recommender import TwoStageModel
from tests.modelkit import FAST, block_data


def test_candidates_are_unseen_and_best_first(block_model: TwoStageModel) -> None:
    stage = block_model.stage
    u = np.arange(20)
    cands = candidates(stage, u, 4)
    assert cands.top.shape == (20, 4)
    seen = stage.seen[u].toarray() > 0
    assert not np.take_along_axis(seen, cands.top, axis=1).any()
    assert (np.diff(cands.scores, axis=1) <= 0).all()
    assert cands.ranks[0].tolist() == [0, 1, 2, 3]


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


def test_too_few_positives_keep_the_candidate_order(
    block_ratings: pd.DataFrame, block_model: TwoStageModel
) -> None:
    ranker = fit_ranker(block_data(block_ratings), FAST, threads=1)
    assert ranker.info["positives"] < MIN_RANKER_POSITIVES
    assert ranker.booster is None and ranker.info["fallback"] == "candidate order"
    stage, parts = block_model.stage, block_model.parts
    u = np.arange(3)
    lists = rank_users(stage, parts.rating, ranker, FAST, u, stage.index.users[u], 3)
    cands = candidates(stage, u, FAST.candidates)
    for row, uid in enumerate(stage.index.users[u]):
        assert lists[int(uid)] == list(stage.index.movies[cands.top[row, :3]])
