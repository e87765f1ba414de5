"""The served fold-in is the model's own answer: `FoldInCache`, loaded from a bundle as a worker
loads it, gives for any history exactly what the model's `recommend_from_history` gives, for
both model kinds; and it keeps its answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from movierec.model.recommender import RankByRating, Recommender, TwoStageModel
from movierec.retrain.training import write_bundle_files
from movierec.serve.live.fold_in_cache import FoldInCache

USERS = np.arange(20)
HISTORIES = (
    [],
    ["a+movie+0+2000"],
    ["b+movie+1+2000", "b+movie+4+2000", "b+movie+8+2000"],
    ["a+movie+3+2000", "not+in+the+catalog+1999"],
)


def _served(folder: Path, model: Recommender) -> FoldInCache:
    folder.mkdir()
    write_bundle_files(folder, model, USERS, k=20)
    fold = FoldInCache.load(folder)
    assert fold is not None
    return fold


@pytest.mark.parametrize("variant", [False, True], ids=["two-stage", "rank-by-rating"])
def test_a_served_fold_in_is_the_models_own_answer(
    tmp_path: Path, block_model: TwoStageModel, variant: bool
) -> None:
    model: Recommender = RankByRating(block_model) if variant else block_model
    fold = _served(tmp_path / "bundle", model)
    for user in (0, 7, 13, 10_000):  # known users of each block, and one the model never saw
        for history in HISTORIES:
            for k in (5, 20):
                want = model.recommend_from_history(user, history, k)
                assert fold.recommend(user, history, k) == want, (user, history, k)


def test_a_bundle_without_a_model_has_no_fold_in(tmp_path: Path) -> None:
    assert FoldInCache.load(tmp_path) is None


def test_lists_are_cached_and_answer_for_their_own_length_or_shorter(
    tmp_path: Path, block_model: TwoStageModel
) -> None:
    # the warmer makes lists with spare movies (k + 10); a request's fold-in of the same
    # history must still answer k movies, and a longer request must not get the shorter list
    fold = _served(tmp_path / "bundle", block_model)
    first = fold.recommend(12, ["a+movie+0+2000"], 20)
    assert fold.recommend(12, ["a+movie+0+2000"], 20) is first  # the cached list
    longer = fold.recommend(4, ["b+movie+0+2000"], 8)
    assert len(longer) == 8
    assert fold.recommend(4, ["b+movie+0+2000"], 5) == longer[:5]
    shorter = fold.recommend(6, ["b+movie+0+2000"], 3)
    assert len(shorter) == 3 and fold.recommend(6, ["b+movie+0+2000"], 8)[:3] == shorter
    assert len(fold.recommend(6, ["b+movie+0+2000"], 8)) == 8
