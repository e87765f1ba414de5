"""online_metrics.json's one reader and writer: the evaluator's record read back as written,
the file's keys kept, what it lacks unknown, a corrupt file an error that names the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from movierec.core.errors import DataValidationError
from movierec.core.online_metrics import (
    ArmMetrics,
    Interval,
    OnlineMetrics,
    append_feedback_event,
    read_feedback_events,
)


def _metrics() -> OnlineMetrics:
    stable = ArmMetrics(arm="stable", model_version="v1", requests=900, ctr=0.2)
    canary = ArmMetrics(
        arm="canary", model_version="v2", requests=100, female_male_rating_ratio=1.1,
        ctr_by_gender={"F": 0.3, "M": None},
    )  # fmt: skip
    return OnlineMetrics(
        arms={"stable": stable, "canary": canary},
        lift=Interval(-0.05, -0.2, 0.1),
        margin=0.1,
        evaluated_at="2025-03-01T12:00:00+00:00",
        details={"decision": "HOLD", "canary": "v2", "reasons": ["too few users"]},
    )


def test_a_record_reads_back_as_written_with_the_files_keys(tmp_path: Path) -> None:
    path = tmp_path / "online_metrics.json"
    _metrics().save(path)
    raw = json.loads(path.read_text())
    assert raw["arms"]["canary"]["satisfaction_ratio"] == 1.1
    assert "female_male_rating_ratio" not in raw["arms"]["canary"]
    assert raw["lift"] == {"value": -0.05, "low": -0.2, "high": 0.1}
    assert (raw["decision"], raw["canary"]) == ("HOLD", "v2")
    assert OnlineMetrics.load(path) == _metrics()


def test_what_the_record_lacks_is_unknown(tmp_path: Path) -> None:
    m = OnlineMetrics.from_json({"arms": {"stable": {"arm": "stable"}}}, "f")
    assert m.arms["stable"].ctr is None and m.arms["stable"].requests == 0
    assert "canary" not in m.arms and m.lift == Interval() and m.margin is None
    assert OnlineMetrics.load(tmp_path / "none.json") is None


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ([1, 2], "f: expected an object"),
        ({"arms": {"stable": {"arm": "stable", "ctr": "high"}}}, "f.arms.stable.ctr"),
        ({"arms": {"canary": {"arm": "canary", "requests": 1.5}}}, "f.arms.canary.requests"),
        ({"arms": {"stable": {"arm": "stable", "requests": True}}}, "f.arms.stable.requests"),
        ({"arms": {"stable": {"ctr": 0.1}}}, "f.arms.stable: no arm"),
        ({"arms": [], "lift": {}}, "f.arms: expected an object"),
        ({"lift": {"low": "x"}}, "f.lift.low"),
        ({"margin": [0.1]}, "f.margin"),
    ],
)
def test_a_value_of_the_wrong_type_is_an_error_naming_the_field(raw: object, named: str) -> None:
    with pytest.raises(DataValidationError, match=named):
        OnlineMetrics.from_json(raw, "f")


def test_a_file_that_is_not_json_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "online_metrics.json"
    path.write_text('{"arms": ')
    with pytest.raises(DataValidationError, match=r"online_metrics\.json: not valid JSON"):
        OnlineMetrics.load(path)


def test_feedback_events_append_and_a_corrupt_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "feedback_events.json"
    assert read_feedback_events(path) == []
    append_feedback_event(path, {"decision": "RAMP", "key": "a"})
    append_feedback_event(path, _metrics().to_json())
    events = read_feedback_events(path)
    assert [e["decision"] for e in events] == ["RAMP", "HOLD"]
    path.write_text('{"decision": "RAMP"}')
    with pytest.raises(DataValidationError, match="expected a JSON list of objects"):
        read_feedback_events(path)
