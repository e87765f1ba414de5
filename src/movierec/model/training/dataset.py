"""`TrainingData`: what a model learns from, in the canonical schema (pandas frames)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingData:
    """Ratings, interactions (watched and/or rated), and the user and movie tables."""

    ratings: pd.DataFrame  # user_id, movie_id, rating, timestamp
    interactions: pd.DataFrame  # user_id, movie_id, minutes, rating, first_ts, last_ts
    users: pd.DataFrame  # user_id, age, gender, occupation
    movies: pd.DataFrame  # movie_id, title, year, genres

    @classmethod
    def from_ratings(
        cls, ratings: pd.DataFrame, users: pd.DataFrame, movies: pd.DataFrame
    ) -> TrainingData:
        """Every rated movie counts as watched (no minutes known)."""
        inter = pd.DataFrame(
            {
                "user_id": ratings["user_id"].to_numpy(),
                "movie_id": ratings["movie_id"].astype(str).to_numpy(),
                "minutes": np.zeros(len(ratings), dtype=np.int32),
                "rating": ratings["rating"].astype("float32").to_numpy(),
                "first_ts": ratings["timestamp"].to_numpy(),
                "last_ts": ratings["timestamp"].to_numpy(),
            }
        )
        return cls(ratings, inter, users, movies)

    @classmethod
    def from_interactions(
        cls, interactions: pd.DataFrame, users: pd.DataFrame, movies: pd.DataFrame
    ) -> TrainingData:
        """The ratings are the rated interactions (timestamp: the interaction's last event)."""
        rated = interactions.dropna(subset=["rating"])
        ratings = pd.DataFrame(
            {
                "user_id": rated["user_id"].to_numpy(),
                "movie_id": rated["movie_id"].astype(str).to_numpy(),
                "rating": rated["rating"].astype("int8").to_numpy(),
                "timestamp": rated["last_ts"].to_numpy(),
            }
        )
        return cls(ratings, interactions, users, movies)

    def latest(self, max_interactions: int) -> TrainingData:
        """At most `max_interactions` interactions (the most recent), to bound memory."""
        if len(self.interactions) <= max_interactions:
            return self
        inter = self.interactions.sort_values("last_ts").iloc[-max_interactions:]
        log.info("capped training interactions to the latest %d", max_interactions)
        return TrainingData.from_interactions(inter, self.users, self.movies)
