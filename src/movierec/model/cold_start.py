"""Cold start: the list for a user the model has no history of - the movies most liked (rated
>= 4) by users of the same gender and age group (`core.schema.age_group`), else overall
(fitted by `model.training.cold_lists`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from movierec.core.schema import age_group

LIST_LENGTH = 100  # movies kept per segment
MIN_SEGMENT_LIKES = 50  # a segment with fewer liked ratings uses the overall list
LIKED = 4


def segment(gender: str, age: float) -> str:
    """A demographic segment's name: gender and age-group code, as "F:2"."""
    return f"{gender}:{int(age_group([age])[0])}"


class ColdUser(TypedDict, total=False):
    """What is known of a user the model has no history of."""

    user_id: int
    segment: str  # a segment's name, as `segment` makes it
    gender: str
    age: float


@dataclass(frozen=True)
class ColdStart:
    """Lists per demographic segment ("all" always there) and each known user's segment."""

    lists: dict[str, list[str]]
    segments: dict[int, str]

    def recommend(self, user: ColdUser | None = None, k: int = 20) -> list[str]:
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
