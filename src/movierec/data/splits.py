"""Splits of ratings and interactions, each defined once: each user's latest fraction (the
fixed holdout, the ranker's training split) and removing a set of (user, movie) pairs (the
holdout from training data, a validation split from the tuning data)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def latest_per_user(
    frame: pd.DataFrame,
    fraction: float,
    min_rows: int,
    time_column: str,
    shuffle_seed: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(earlier, later): for each user with at least `min_rows` rows, the latest `fraction` of
    them (at least one) is `later`; users with fewer rows stay whole in `earlier`. With
    `shuffle_seed`, a random `fraction` of each user's rows instead of the latest. Both parts
    come ordered by user, then time (or the random key), then movie."""
    if shuffle_seed is not None:
        key = np.random.default_rng(shuffle_seed).random(len(frame))
        ordered = frame.assign(_key=key).sort_values(["user_id", "_key"]).drop(columns="_key")
    else:
        ordered = frame.sort_values(["user_id", time_column, "movie_id"], kind="stable")
    position = ordered.groupby("user_id").cumcount()
    size = ordered.groupby("user_id")["movie_id"].transform("size")
    n_later = np.where(size >= min_rows, np.maximum(1, np.floor(size * fraction)), 0)
    later = (position >= size - n_later).to_numpy()
    return ordered[~later], ordered[later]


def exclude_pairs(frame: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """`frame` without any row whose (user_id, movie_id) pair is in `pairs`."""
    key = pd.MultiIndex.from_frame(pairs[["user_id", "movie_id"]])
    mask = pd.MultiIndex.from_frame(frame[["user_id", "movie_id"]]).isin(key)
    return frame[~mask].reset_index(drop=True)
