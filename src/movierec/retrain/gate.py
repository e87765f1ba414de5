"""The retrainer's memory and its new-data gate.

`data/retrain_state.json` records what the last successful retrain saw (the lake's counts); a
run trains only when at least `gate_min_new_users` new users and `gate_min_new_interactions`
new interactions arrived since then.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from movierec.core.errors import MovierecError
from movierec.core.files import atomic_write_json, read_json
from movierec.core.settings import Settings
from movierec.data.lake import load_lake


@dataclass(frozen=True)
class DataCounts:
    """What the lake holds: the gate compares these between runs."""

    users: int
    interactions: int
    ratings: int

    @classmethod
    def from_dict(cls, d: object) -> DataCounts:
        """Counts as the state files hold them (none: all zero); ValueError when they are not
        counts."""
        d = d or {}
        if not isinstance(d, dict):
            raise ValueError(f"counts: expected an object, found {type(d).__name__}")
        return cls(int(d.get("users", 0)), int(d.get("interactions", 0)), int(d.get("ratings", 0)))


@dataclass(frozen=True)
class Gate:
    """The gate's verdict and the figures it rests on."""

    passed: bool
    counts: DataCounts
    new_users: int
    new_interactions: int
    reason: str


@dataclass(frozen=True)
class RetrainState:
    """`data/retrain_state.json`: what the last successful retrain saw."""

    version: str  # the model it trained
    decision: str  # "promoted", "rejected" or "initial" (`movierec train --serve-if-none`)
    counts: DataCounts  # the lake's counts it trained on: the gate's reference
    finished_at: str  # ISO 8601


def read_state(settings: Settings) -> RetrainState | None:
    """The last successful retrain's record, or None before the first. A corrupt file is an
    error that names it (never silently replaced: it is what the gate compares against)."""
    path = settings.retrain_state_file
    try:
        raw = read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MovierecError(f"{path}: corrupt retrain state ({exc}); fix or remove it") from None
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise MovierecError(f"{path}: expected a JSON object, found {type(raw).__name__}")
    try:
        return RetrainState(
            str(raw.get("version", "")),
            str(raw.get("decision", "")),
            DataCounts.from_dict(raw.get("counts")),
            str(raw.get("finished_at", "")),
        )
    except (TypeError, ValueError) as exc:
        raise MovierecError(f"{path}: corrupt retrain state ({exc}); fix or remove it") from None


def write_state(settings: Settings, version: str, decision: str, counts: DataCounts) -> None:
    state = RetrainState(version, decision, counts, datetime.now(UTC).isoformat())
    atomic_write_json(settings.retrain_state_file, asdict(state))


def lake_counts(settings: Settings) -> DataCounts:
    """Users, interactions and ratings in the lake right now."""
    lake = load_lake(settings)
    return DataCounts(
        users=int(lake.interactions["user_id"].nunique()) if len(lake.interactions) else 0,
        interactions=len(lake.interactions),
        ratings=len(lake.ratings),
    )


def check_gate(settings: Settings, *, force: bool = False) -> Gate:
    """Enough new data since the last successful retrain? (`force` skips the thresholds, never
    the need for some data.)"""
    counts = lake_counts(settings)
    state = read_state(settings)
    before = state.counts if state is not None else DataCounts(0, 0, 0)
    new_users = counts.users - before.users
    new_inter = counts.interactions - before.interactions
    need_users = settings.retraining.gate_min_new_users
    need_inter = settings.retraining.gate_min_new_interactions
    enough = new_users >= need_users and new_inter >= need_inter
    passed = (force or enough) and counts.interactions > 0
    reason = (
        f"{new_users} new users (need {need_users}), "
        f"{new_inter} new interactions (need {need_inter})"
    )
    return Gate(passed, counts, new_users, new_inter, reason)
