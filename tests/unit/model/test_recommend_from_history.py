"""A model's answer from a history (fold-in) on the block dataset (users 0-9 watch only
a-movies, 10-19 only b-movies): the answer is known. A known user with no new events gets exactly
their precomputed list (on ml-100k too, for a random sample of its users); a movie watched since
leaves the list; a new user gets a list from their first watches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from movierec.model.recommender import RankByRating, Recommender, TwoStageModel, load_recommender
from movierec.model.training.dataset import TrainingData
from movierec.model.training.fit import fit_two_stage
from tests.modelkit import FAST

USERS = np.arange(20)


class _Answers:
    """A model (as loaded from its files) beside its own precomputed lists."""

    def __init__(self, model: Recommender) -> None:
        self.model = model
        self.lists = model.recommend(USERS, 20)

    def recommend(self, user: int, history: list[str], k: int) -> list[str]:
        return self.model.recommend_from_history(user, history, k)

    def get(self, user: int) -> list[str] | None:
        return self.lists.get(user)


def _saved(folder: Path, model: Recommender) -> tuple[_Answers, _Answers]:
    folder.mkdir()
    model.save(folder)
    answers = _Answers(load_recommender(folder, mmap=True, threads=1))
    return answers, answers


@pytest.fixture
def served(tmp_path: Path, block_model: TwoStageModel) -> tuple[_Answers, _Answers]:
    return _saved(tmp_path / "bundle", block_model)


def _seen(block_model: TwoStageModel, user: int) -> set[str]:
    _, history = block_model.history_positions(user, [])
    return set(block_model.stage.index.movies[history].tolist())


def _block(user: int) -> str:
    return "a+" if user < 10 else "b+"


def test_without_new_events_the_fold_in_is_the_precomputed_list(served) -> None:  # type: ignore[no-untyped-def]
    # exactly: candidates and answers from a history are scored by the same neighbours
    fold, lists = served
    for user in USERS.tolist():
        assert fold.recommend(user, [], 20) == lists.get(user), user


@pytest.mark.slow
def test_without_new_events_the_fold_in_is_the_precomputed_list_on_ml100k(
    ml100k_dir: Path,
) -> None:
    tables = {
        n: pd.read_parquet(ml100k_dir / f"{n}.parquet") for n in ("ratings", "users", "movies")
    }
    data = TrainingData.from_ratings(tables["ratings"], tables["users"], tables["movies"])
    model = fit_two_stage(data, FAST.replace(xgb_rounds=30, rank_rounds=30), threads=2)
    users = np.random.default_rng(0).choice(model.known_users, 60, replace=False)
    lists = model.recommend(users, 20)
    for user in users.tolist():
        assert model.recommend_from_history(user, [], 20) == lists[user], user


def test_a_movie_watched_since_leaves_the_list_and_the_block_stays_first(  # type: ignore[no-untyped-def]
    served, block_model: TwoStageModel
) -> None:
    fold, lists = served
    before = lists.get(3)
    assert before is not None and before[0].startswith("a+")
    after = fold.recommend(3, [before[0]], 20)
    assert before[0] not in after
    unseen_a = {f"a+movie+{j}+2000" for j in range(10)} - _seen(block_model, 3) - {before[0]}
    assert set(after[: len(unseen_a)]) == unseen_a
    assert not set(after) & _seen(block_model, 3)


def test_a_new_user_gets_a_personal_list_from_three_watches(served) -> None:  # type: ignore[no-untyped-def]
    fold, _ = served
    watched = ["b+movie+1+2000", "b+movie+4+2000", "b+movie+8+2000"]
    got = fold.recommend(10_000, watched, 20)
    assert not set(got) & set(watched)
    assert set(got[:7]) == {f"b+movie+{j}+2000" for j in range(10)} - set(watched)
    cold = fold.recommend(10_000, [], 20)
    assert got != cold


def test_unknown_titles_in_the_history_are_ignored(served) -> None:  # type: ignore[no-untyped-def]
    fold, _ = served
    assert fold.recommend(5, ["not+in+the+catalog+1999"], 20) == fold.recommend(5, [], 20)


def test_the_rank_by_rating_variant_folds_in_by_predicted_rating(
    tmp_path: Path, block_model: TwoStageModel
) -> None:
    fold, lists = _saved(tmp_path / "variant", RankByRating(block_model))
    assert isinstance(fold.model, RankByRating)
    for user in (0, 13):
        got, want = fold.recommend(user, [], 20), lists.get(user)
        assert want is not None and len(got) == 14  # its 20 movies, but the 6 seen
        assert got == want[:14]  # (the variant's precomputed lists end with the seen ones)
        assert not set(fold.recommend(user, want[:2], 20)) & set(want[:2])


def test_recent_weight_puts_the_latest_movies_neighbours_first(block_model: TwoStageModel) -> None:
    # three b-movies, then one a-movie: alike, the b-block leads; the latest movie weighted
    # ten times more, the a-block does
    history = ["b+movie+1+2000", "b+movie+4+2000", "b+movie+8+2000", "a+movie+2+2000"]
    alike = block_model.recommend_from_history(10_000, history, 5)
    params = block_model.params.replace(fold_in_recent_weight=10.0, fold_in_recent_movies=1)
    recent = TwoStageModel(params, block_model.parts).recommend_from_history(10_000, history, 5)
    assert alike[0].startswith("b+")
    assert recent[0].startswith("a+")
    assert not set(recent) & set(history)
