"""Cold start: the list for a user the model has no history of - the movies most liked (rated
>= 4) by users of the same gender and age group (`core.schema.age_group`), else overall."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from movierec.core.schema import age_group
from movierec.model.data import TrainingData

LIST_LENGTH = 100  # movies kept per segment
MIN_SEGMENT_LIKES = 50  # a segment with fewer liked ratings uses the overall list
LIKED = 4


def segment(gender: str, age: float) -> str:
    """A demographic segment's name: gender and age-group code, as "F:2"."""
    return f"{gender}:{int(age_group([age])[0])}"


@dataclass(frozen=True)
class ColdStart:
    """Lists per demographic segment ("all" always there) and each known user's segment."""

    lists: dict[str, list[str]]
    segments: dict[int, str]

    @classmethod
    def fit(cls, data: TrainingData, k: int = LIST_LENGTH) -> ColdStart:
        rated = data.ratings.merge(
            data.users[["user_id", "gender", "age"]], on="user_id", how="left"
        )
        liked = rated[rated["rating"] >= LIKED]
        lists = {"all": list(liked["movie_id"].value_counts().index[:k])}
        liked = liked.dropna(subset=["gender", "age"])
        if len(liked):
            names = (
                liked["gender"].astype(str)
                + ":"
                + pd.Series(
                    age_group(liked["age"].to_numpy(dtype=float)), index=liked.index
                ).astype(str)
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
        return cls(lists, segments)

    def recommend(self, user: Mapping[str, Any] | None = None, k: int = 20) -> list[str]:
        """The list of `user`'s segment: given as "segment", known from "user_id", or from
        "gender" and "age"; the overall list otherwise."""
        name = None
        if user:
            name = user.get("segment") or self.segments.get(int(user.get("user_id", -1)))
            if name is None and user.get("gender") is not None and user.get("age") is not None:
                name = segment(str(user["gender"]), float(user["age"]))
        return (self.lists.get(name or "") or self.lists["all"])[:k]

    def to_json(self) -> dict[str, Any]:
        return {"lists": self.lists, "segments": {str(u): s for u, s in self.segments.items()}}

    @classmethod
    def from_json(cls, saved: Mapping[str, Any]) -> ColdStart:
        segments = {int(u): str(s) for u, s in saved["segments"].items()}
        return cls({str(n): list(v) for n, v in saved["lists"].items()}, segments)
