"""Satisfaction by gender and age group, with intervals over users."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from movierec.release.fairness import group_satisfaction


def _per_user(means: dict[int, float], ratings_each: int = 5) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": list(means),
            "requests": 1,
            "clicks": 0,
            "ratings": ratings_each,
            "rating_sum": [m * ratings_each for m in means.values()],
        }
    )


def test_each_group_is_compared_with_the_rest_of_its_grouping() -> None:
    rng = np.random.default_rng(0)
    ids = list(range(400))
    users = pd.DataFrame(
        {
            "user_id": ids,
            "gender": ["F" if u % 2 else "M" for u in ids],
            "age": [20 if u < 200 else 40 for u in ids],
        }
    )
    # women rate 4 on average, men 3.2 (F/M = 1.25); ages alike
    means = {u: (4.0 if u % 2 else 3.2) + rng.normal(0, 0.3) for u in ids}
    out = group_satisfaction(_per_user(means), users, alpha=0.05)
    assert set(out) == {"gender:F", "gender:M", "age:18-24", "age:35-44"}
    f = out["gender:F"]
    assert f["users"] == 200 and f["ratings"] == 1000
    assert f["ratio"] == pytest.approx(f["mean"] / out["gender:M"]["mean"])
    assert f["low"] > 1.15  # shown outside the tolerated range
    age = out["age:18-24"]
    assert age["low"] < 1.0 < age["high"]  # no difference: the interval holds 1


def test_no_ratings_no_groups() -> None:
    users = pd.DataFrame({"user_id": [1], "gender": ["F"], "age": [30]})
    empty = _per_user({1: 4.0}, ratings_each=0)
    assert group_satisfaction(empty, users, alpha=0.05) == {}
