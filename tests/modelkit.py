"""The block dataset (a checker-board with a known answer) and fast model parameters."""

from __future__ import annotations

import mmap

import numpy as np
import pandas as pd

from movierec.model.params import ModelParams
from movierec.model.training.dataset import TrainingData

FAST = ModelParams(candidates=20, oof_folds=2)


def block_ratings_frame() -> pd.DataFrame:
    """Users 0-9 rate 6 of movies a0-a9, users 10-19 six of b0-b9 (3 to 5 stars)."""
    rng = np.random.default_rng(0)
    rows = []
    t = pd.Timestamp("2025-01-01T00:00:00Z")
    for u in range(20):
        own = "a" if u < 10 else "b"
        for j in rng.choice(10, size=6, replace=False):
            rows.append((u, f"{own}+movie+{j}+2000", int(rng.integers(3, 6)), t))
            t += pd.Timedelta(minutes=1)
    return pd.DataFrame(rows, columns=["user_id", "movie_id", "rating", "timestamp"]).astype(
        {"rating": "int8"}
    )


def block_users() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": np.arange(20),
            "age": np.where(np.arange(20) % 2 == 0, 25, 45),
            "gender": np.where(np.arange(20) % 3 == 0, "F", "M"),
            "occupation": "other",
        }
    )


def block_movies() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "movie_id": [f"{b}+movie+{j}+2000" for b in "ab" for j in range(10)],
            "title": [f"{b} movie {j}" for b in "ab" for j in range(10)],
            "year": 2000,
            "genres": [["Drama"] if b == "a" else ["Comedy"] for b in "ab" for j in range(10)],
        }
    )


def block_data(ratings: pd.DataFrame) -> TrainingData:
    return TrainingData.from_ratings(ratings, block_users(), block_movies())


def file_mapped(array: np.ndarray) -> bool:
    """The array's memory is a file mapping (through any views of it)."""
    base: object = array
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base, mmap.mmap)
