"""The closed vocabularies of the release, each defined once: the arms a request is served
from, the stages a candidate goes through, and the evaluator's decisions. The values are what
the files hold (`routing.json`, the served log, `online_metrics.json`, `feedback_events.json`);
a `StrEnum` member equals its string."""

from __future__ import annotations

import enum
from typing import Literal, TypeGuard

Arm = Literal["stable", "canary"]  # which model served a request (a shadow serves nobody)
ARMS: tuple[Arm, ...] = ("stable", "canary")


def is_arm(value: object) -> TypeGuard[Arm]:
    return value in ARMS


class Stage(enum.StrEnum):
    """Where the release stands (`Routing.stage`): nothing under evaluation, a shadow
    candidate computing lists it does not serve, or a canary serving some users."""

    STABLE = "stable"
    SHADOW = "shadow"
    CANARY = "canary"


class Decision(enum.StrEnum):
    """What the online evaluator decides about the candidate."""

    RAMP = "RAMP"
    HOLD = "HOLD"
    ABORT = "ABORT"
    PROMOTE = "PROMOTE"
    NONE = "NONE"  # no candidate to evaluate
