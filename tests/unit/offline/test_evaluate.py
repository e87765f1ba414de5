"""Evaluation of any Recommender: warm users' metrics, groups, and cold-start users apart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import pytest

from movierec.model.recommender import Ids, MovieIds, Recommender
from movierec.offline.evaluate import evaluate_model

LISTS = {1: ["a", "b"], 2: ["c", "a"], 3: ["a"]}


class _Fixed(Recommender):
    """Predicts 3 for everyone; fixed lists."""

    def predict_ratings(self, user_ids: Ids, movie_ids: MovieIds) -> np.ndarray:
        return np.full(len(user_ids), 3.0)

    def recommend(self, user_ids: Ids, k: int = 20) -> dict[int, list[str]]:
        return {int(u): LISTS.get(int(u), [])[:k] for u in user_ids}

    def recommend_from_history(
        self, user_id: int, history: Sequence[str], k: int = 20
    ) -> list[str]:
        return [m for m in LISTS.get(user_id, []) if m not in history][:k]

    def cold_start(self, user: Mapping[str, Any] | None = None, k: int = 20) -> list[str]:
        return ["a"][:k]

    @property
    def known_users(self) -> np.ndarray:
        return np.array([1, 2])

    @property
    def known_movies(self) -> np.ndarray:
        return np.array(["a", "b", "c"])

    def describe(self) -> dict[str, Any]:
        return {}

    def save(self, directory: Path) -> list[str]:
        return []

    @classmethod
    def load(cls, directory: Path, *, mmap: bool = False, threads: int | None = None) -> Self:
        return cls()


def test_any_recommender_is_evaluated_with_cold_users_apart() -> None:
    test = pd.DataFrame(
        {"user_id": [1, 1, 2, 3], "movie_id": ["a", "x", "a", "a"], "rating": [5, 1, 4, 5]}
    )
    users = pd.DataFrame({"user_id": [1, 2, 3], "age": [20, 40, 30], "gender": ["F", "M", "F"]})
    m = evaluate_model(_Fixed(), test, users, catalog_size=4, k=2)
    assert m["rmse"] == pytest.approx(np.sqrt((4 + 4 + 1 + 4) / 4))  # 5, 1, 4, 5 vs 3
    assert m["test_rows"] == 4
    slices = m["slices"]  # user 3 is new; movie x is new
    assert slices["known"]["rows"] == 2 and slices["known"]["rmse"] == pytest.approx(np.sqrt(5 / 2))
    assert slices["new_movie"]["rows"] == 1 and slices["new_movie"]["rmse"] == pytest.approx(2.0)
    assert slices["new_user"]["rows"] == 1 and slices["new_user"]["rmse"] == pytest.approx(2.0)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / np.log2(3)) / 2)  # 'a' 1st, then 2nd
    assert m["coverage"] == pytest.approx(3 / 4)  # a, b, c of 4 movies
    assert set(m["by_group"]["gender"]) == {"F", "M"}
    assert m["by_group"]["age_group"]["18-24"]["rmse"] == pytest.approx(np.sqrt((4 + 4) / 2))
    assert m["cold_start"]["users"] == 1 and m["cold_start"]["rmse"] == pytest.approx(2.0)
