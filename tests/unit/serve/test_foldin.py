"""Fold-in on the block dataset (users 0-9 watch only a-movies, 10-19 only b-movies): the
answer is known. A known user with no new events gets exactly their precomputed list; a movie
watched since leaves the list; a new user is folded in from their first watches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from movierec.model.recommender import RankByRating, TwoStageModel
from movierec.registry.serving import PrecomputedLists
from movierec.retrain.training import write_bundle_files
from movierec.serve.foldin import FoldIn

USERS = np.arange(20)


def _bundle(folder: Path, model: TwoStageModel | RankByRating) -> tuple[FoldIn, PrecomputedLists]:
    folder.mkdir()
    write_bundle_files(folder, model, USERS, k=20)
    fold = FoldIn.load(folder)
    assert fold is not None
    return fold, PrecomputedLists.load(folder)


@pytest.fixture
def served(tmp_path: Path, block_model: TwoStageModel) -> tuple[FoldIn, PrecomputedLists]:
    return _bundle(tmp_path / "bundle", block_model)


def _seen(fold: FoldIn, user: int) -> set[str]:
    _, history = fold.history(user, [])
    return set(fold.stage.index.movies[history].tolist())


def _block(user: int) -> str:
    return "a+" if user < 10 else "b+"


def test_without_new_events_the_fold_in_is_the_precomputed_list(served) -> None:  # type: ignore[no-untyped-def]
    # the same movies, and the same order wherever the scores differ: the user's own block
    # first (the other block's movies all score 0, and ties may fall either way)
    fold, lists = served
    for user in USERS.tolist():
        got, want = fold.recommend(user, [], 20), lists.get(user)
        assert want is not None and set(got) == set(want), user
        own = [m for m in want if m.startswith(_block(user))]
        assert got[: len(own)] == own, user


def test_a_movie_watched_since_leaves_the_list_and_the_block_stays_first(served) -> None:  # type: ignore[no-untyped-def]
    fold, lists = served
    before = lists.get(3)
    assert before is not None and before[0].startswith("a+")
    after = fold.recommend(3, [before[0]], 20)
    assert before[0] not in after
    unseen_a = {f"a+movie+{j}+2000" for j in range(10)} - _seen(fold, 3) - {before[0]}
    assert set(after[: len(unseen_a)]) == unseen_a
    assert not set(after) & _seen(fold, 3)


def test_a_new_user_gets_a_personal_list_from_three_watches(served) -> None:  # type: ignore[no-untyped-def]
    fold, _ = served
    watched = ["b+movie+1+2000", "b+movie+4+2000", "b+movie+8+2000"]
    got = fold.recommend(10_000, watched, 20)
    assert not set(got) & set(watched)
    assert set(got[:7]) == {f"b+movie+{j}+2000" for j in range(10)} - set(watched)
    cold = fold.recommend(10_000, [], 20)
    assert got != cold


def test_unknown_titles_in_the_history_are_ignored_and_lists_are_cached(served) -> None:  # type: ignore[no-untyped-def]
    fold, _ = served
    assert fold.recommend(5, ["not+in+the+catalog+1999"], 20) == fold.recommend(5, [], 20)
    first = fold.recommend(12, ["a+movie+0+2000"], 20)
    assert fold.recommend(12, ["a+movie+0+2000"], 20) is first  # the cached list


def test_a_cached_list_answers_for_its_own_length_or_shorter(served) -> None:  # type: ignore[no-untyped-def]
    # the warmer makes lists with spare movies (k + 10); a request's fold-in of the same
    # history must still answer k movies, and a longer request must not get the shorter list
    fold, _ = served
    longer = fold.recommend(4, ["b+movie+0+2000"], 8)
    assert len(longer) == 8
    assert fold.recommend(4, ["b+movie+0+2000"], 5) == longer[:5]
    shorter = fold.recommend(6, ["b+movie+0+2000"], 3)
    assert len(shorter) == 3 and fold.recommend(6, ["b+movie+0+2000"], 8)[:3] == shorter
    assert len(fold.recommend(6, ["b+movie+0+2000"], 8)) == 8


def test_the_rank_by_rating_variant_folds_in_by_predicted_rating(
    tmp_path: Path, block_model: TwoStageModel
) -> None:
    fold, lists = _bundle(tmp_path / "variant", RankByRating(block_model))
    assert fold.by_rating
    for user in (0, 13):
        got, want = fold.recommend(user, [], 20), lists.get(user)
        assert want is not None and len(got) == 14  # its 20 movies, but the 6 seen
        assert got == want[:14]  # (the variant's precomputed lists end with the seen ones)
        assert not set(fold.recommend(user, want[:2], 20)) & set(want[:2])
