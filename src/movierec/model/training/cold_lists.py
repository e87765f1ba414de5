"""Fitting the cold-start lists (`model.cold_start.ColdStart`)."""

from __future__ import annotations

import pandas as pd

from movierec.core.schema import age_group
from movierec.model.cold_start import LIKED, LIST_LENGTH, MIN_SEGMENT_LIKES, ColdStart, segment
from movierec.model.training.dataset import TrainingData


def fit_cold_start(data: TrainingData, k: int = LIST_LENGTH) -> ColdStart:
    """The most liked movies of each segment with enough likes, and overall."""
    rated = data.ratings.merge(data.users[["user_id", "gender", "age"]], on="user_id", how="left")
    liked = rated[rated["rating"] >= LIKED]
    lists = {"all": list(liked["movie_id"].value_counts().index[:k])}
    liked = liked.dropna(subset=["gender", "age"])
    if len(liked):
        names = (
            liked["gender"].astype(str)
            + ":"
            + pd.Series(age_group(liked["age"].to_numpy(dtype=float)), index=liked.index).astype(
                str
            )
        )
        for name, group in liked.groupby(names):
            if len(group) >= MIN_SEGMENT_LIKES:
                lists[str(name)] = list(group["movie_id"].value_counts().index[:k])
    known = data.users.dropna(subset=["gender", "age"])
    segments = {
        int(uid): segment(str(g), float(a))
        for uid, g, a in zip(known["user_id"], known["gender"], known["age"], strict=True)
    }
    if len(lists["all"]) < k:  # a tiny dataset: fill with any movie
        have = set(lists["all"])
        lists["all"] += [m for m in data.movies["movie_id"] if m not in have][
            : k - len(lists["all"])
        ]
    return ColdStart(lists, segments)
