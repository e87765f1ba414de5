"""`logs/online_metrics.json`: what the online evaluator measured and decided last.

The evaluator (`release/`) writes it, and appends the same record to `feedback_events.json`;
the service (`serve/`) republishes its arms, lift and margin on /metrics, and `movierec release
status` prints it. The type lives here because both read it. The record's fields:

- `arms`: per arm (`stable`, `canary`), an `ArmMetrics` (what the arm did in the period);
- `lift`: canary CTR / stable CTR - 1, `{"value", "low", "high"}`, with its always-valid
  interval (null members when unknown); `margin`: the tolerated loss (null under other rules);
- `evaluated_at`: when the record was written (ISO 8601);
- the decision and its evidence, which only the release reads: `decision`, `reasons`,
  `stage`, `pct_before`, `pct_after`, `stable`, `canary` (the candidate: canary or shadow),
  `rule`, `period_start`, `required_users`, `shadow`, `step`, `key`, `applied`, `repeated`,
  `data_gaps` (`OnlineMetrics.details`, kept as written).

A value the record lacks reads as unknown (None, or 0 for a count); a value of the wrong type
is a `DataValidationError` naming the file and the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TypedDict

from movierec.core.errors import DataValidationError
from movierec.core.files import atomic_write_json, read_json
from movierec.core.vocabulary import Arm, is_arm

SHARED_KEYS = ("arms", "lift", "margin", "evaluated_at")  # what the service reads


class GroupSatisfaction(TypedDict):
    """One group's satisfaction (`release.fairness`): its mean rating and the ratio to the
    rest of its grouping, with the interval of the ratio."""

    users: int
    ratings: int
    mean: float | None
    ratio: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Interval:
    """An estimate with its interval (None when there are too few units to say)."""

    value: float | None = None
    low: float | None = None
    high: float | None = None

    @property
    def known(self) -> bool:
        return self.low is not None and self.high is not None


@dataclass
class ArmMetrics:
    """What one arm did in the period."""

    arm: str
    model_version: str | None
    requests: int = 0
    recommendations: int = 0
    mature_requests: int = 0
    users: int = 0
    clicks: int = 0
    ctr: float | None = None
    ctr_low: float | None = None
    ctr_high: float | None = None
    errors: int = 0
    error_rate: float = 0.0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    interactions: int = 0
    quality_events: int = 0
    mean_rating_female: float | None = None
    mean_rating_male: float | None = None
    # women's mean rating over men's (1.0: both served equally well); "satisfaction_ratio" on disk
    female_male_rating_ratio: float | None = None
    ctr_by_gender: dict[str, float | None] = field(default_factory=dict)
    satisfaction_by_group: dict[str, GroupSatisfaction] = field(default_factory=dict)
    online_rmse: float | None = None
    rmse_ratings: int = 0
    viewings: int = 0
    minutes_per_viewing: float | None = None
    completed_share: float | None = None

    def to_json(self) -> dict[str, object]:
        """The arm as the files hold it."""
        out: dict[str, object] = asdict(self)
        out["satisfaction_ratio"] = out.pop("female_male_rating_ratio")
        return out

    @classmethod
    def from_json(cls, raw: object, where: str) -> ArmMetrics:
        """An arm as the files hold it; `where` names it in an error."""
        if not isinstance(raw, dict):
            raise _wrong(where, "an object", raw)
        values: dict[str, object] = {}
        for f in fields(cls):
            key = _FILE_KEY.get(f.name, f.name)
            if key in raw and raw[key] is not None:
                values[f.name] = _checked(f"{where}.{key}", raw[key], str(f.type))
        if "arm" not in values:
            raise DataValidationError(f"{where}: no arm")
        values.setdefault("model_version", None)
        return cls(**values)  # type: ignore[arg-type]  # each value checked against its field


_FILE_KEY = {"female_male_rating_ratio": "satisfaction_ratio"}


def _wrong(where: str, expected: str, value: object) -> DataValidationError:
    return DataValidationError(
        f"{where}: expected {expected}, found {type(value).__name__} {value!r:.40}"
    )


def _int(where: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong(where, "an integer", value)
    return value


def _float(where: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong(where, "a number", value)
    return float(value)


def _str(where: str, value: object) -> str:
    if not isinstance(value, str):
        raise _wrong(where, "a string", value)
    return value


def _object(where: str, value: object) -> dict[str, object]:
    if not isinstance(value, dict):
        raise _wrong(where, "an object", value)
    return value


def _or_empty(value: object) -> object:
    return {} if value is None else value


# a field's annotation (without "| None") -> its check; anything else is an object
_CHECKS = {"int": _int, "float": _float, "str": _str}


def _checked(where: str, value: object, annotation: str) -> object:
    """`value` (not None) if it has the field's type, else a DataValidationError at `where`."""
    return _CHECKS.get(annotation.removesuffix(" | None"), _object)(where, value)


@dataclass(frozen=True)
class OnlineMetrics:
    """The record (see the module's docstring); `details` holds the release's own fields."""

    arms: dict[Arm, ArmMetrics]
    lift: Interval = field(default_factory=Interval)
    margin: float | None = None
    evaluated_at: str | None = None
    details: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return self.details | {
            "arms": {arm: m.to_json() for arm, m in self.arms.items()},
            "lift": asdict(self.lift),
            "margin": self.margin,
            "evaluated_at": self.evaluated_at,
        }

    @classmethod
    def from_json(cls, raw: object, where: str) -> OnlineMetrics:
        record = _object(where, raw)
        arms, lift = (_object(f"{where}.{k}", _or_empty(record.get(k))) for k in ("arms", "lift"))
        bounds = {
            k: _float(f"{where}.lift.{k}", lift[k])
            for k in ("value", "low", "high")
            if lift.get(k) is not None
        }
        margin, when = record.get("margin"), record.get("evaluated_at")
        return cls(
            arms={
                arm: ArmMetrics.from_json(m, f"{where}.arms.{arm}")
                for arm, m in arms.items()
                if is_arm(arm)
            },
            lift=Interval(**bounds),
            margin=None if margin is None else _float(f"{where}.margin", margin),
            evaluated_at=None if when is None else _str(f"{where}.evaluated_at", when),
            details={k: v for k, v in record.items() if k not in SHARED_KEYS},
        )

    def save(self, path: Path) -> None:
        atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> OnlineMetrics | None:
        """The file's record; None when there is none yet. A file that is not JSON or not a
        record is a `DataValidationError` naming it."""
        raw = _read(path)
        return None if raw is None else cls.from_json(raw, str(path))


# ---- feedback_events.json: every decision's record, and every override, oldest first -------


def read_feedback_events(path: Path) -> list[dict[str, object]]:
    """The events ([] before the first); a file that is not a JSON list of objects is a
    `DataValidationError` naming it."""
    events = _read(path)
    if events is None:
        return []
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise DataValidationError(f"{path}: expected a JSON list of objects")
    return events


def append_feedback_event(path: Path, event: Mapping[str, object]) -> None:
    """Rewrite the file atomically with `event` last (the caller holds the release's lock)."""
    atomic_write_json(path, [*read_feedback_events(path), dict(event)])


def _read(path: Path) -> object:
    try:
        return read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataValidationError(f"{path}: not valid JSON ({exc})") from None
