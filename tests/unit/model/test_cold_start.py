"""Cold start: lists per gender and age group (the schema's age codes), else overall."""

from __future__ import annotations

import numpy as np
import pandas as pd

from movierec.core.schema import AGE_LABELS
from movierec.model.cold_start import MIN_SEGMENT_LIKES, ColdStart, segment
from movierec.model.training.cold_lists import fit_cold_start
from movierec.model.training.dataset import TrainingData


def _data() -> TrainingData:
    """60 young women like movie y, 60 older men like movie o; everyone also likes z."""
    t = pd.Timestamp("2025-01-01", tz="UTC")
    users = pd.DataFrame(
        {
            "user_id": np.arange(121),
            "age": [20] * 60 + [50] * 60 + [np.nan],
            "gender": ["F"] * 60 + ["M"] * 60 + [None],
            "occupation": "other",
        }
    )
    rows = [(u, "y" if u < 60 else "o", 5, t) for u in range(120)]
    rows += [(u, "z", 4, t) for u in range(0, 120, 3)]
    ratings = pd.DataFrame(rows, columns=["user_id", "movie_id", "rating", "timestamp"])
    movies = pd.DataFrame({"movie_id": ["o", "y", "z", "w"], "year": 2000, "genres": [[]] * 4})
    return TrainingData.from_ratings(ratings, users, movies)


def test_segments_are_gender_and_the_schemas_age_group_code() -> None:
    assert segment("F", 20) == "F:1" and AGE_LABELS[1] == "18-24"
    assert segment("M", 50) == "M:4" and AGE_LABELS[4] == "45-55"


def test_a_user_gets_their_segments_list_and_an_unknown_one_the_overall_list() -> None:
    cold = fit_cold_start(_data(), k=3)
    assert cold.lists["F:1"][0] == "y" and cold.lists["M:4"][0] == "o"
    assert cold.recommend({"user_id": 5}, 1) == ["y"]
    assert cold.recommend({"user_id": 100}, 1) == ["o"]
    assert cold.recommend({"gender": "M", "age": 47}, 1) == ["o"]
    assert cold.recommend({"user_id": 120}, 3) == cold.lists["all"]  # demographics unknown
    assert cold.recommend(None, 3) == cold.lists["all"]
    assert len(cold.lists["all"]) == 3  # filled from the catalog when too few are liked


def test_a_small_segment_falls_back_to_the_overall_list() -> None:
    data = _data()
    few = data.ratings[(data.ratings["user_id"] >= 60) | (data.ratings["user_id"] < 10)]
    cold = fit_cold_start(TrainingData.from_ratings(few, data.users, data.movies))
    assert len(few[few["user_id"] < 10]) < MIN_SEGMENT_LIKES
    assert "F:1" not in cold.lists
    assert cold.recommend({"user_id": 5}, 2) == cold.lists["all"][:2]


def test_cold_start_round_trips_through_json() -> None:
    cold = fit_cold_start(_data())
    assert ColdStart.from_json(cold.to_json()) == cold
