"""The evaluator end to end on a tiny home: served and shadow logs and an event log written
by hand, real ingest, real routing; each stage's decision moves the candidate and is recorded
once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from movierec.core.files import append_lines, read_json
from movierec.core.settings import Settings
from movierec.core.vocabulary import Decision
from movierec.data.events import format_watch
from movierec.registry.routing import (
    abort_canary,
    arm_for,
    read_routing,
    set_canary,
    set_shadow,
    set_stable,
)
from movierec.release.evaluator import evaluate_release
from tests.conftest import make_settings
from tests.servicekit import make_bundle

MOVIES = ["heat+1995", "alien+1979", "jaws+1975"]


@pytest.fixture
def home(tmp_path: Path) -> Settings:
    # a wide margin, so that a few thousand simulated users can show non-inferiority
    s = make_settings(
        tmp_path, min_samples_per_arm=5, min_users_per_arm=5, noninferiority_margin=0.5
    )
    make_bundle(s, "v1", "one")
    make_bundle(s, "v2", "two")
    set_stable(s, "v1", "test")
    return s


def _daily(base: Path, when: datetime) -> Path:
    return base.with_name(f"{base.stem}-{when.astimezone(UTC).date().isoformat()}{base.suffix}")


def _traffic(settings: Settings, users: range, clicks: set[str]) -> None:
    """One request per user after the routing changed; a user starts watching the first
    movie a minute later when their arm is in `clicks` (user ids divisible by 3 never do);
    with a shadow, each request is logged with the candidate's list; a late event makes
    every request mature."""
    routing = read_routing(settings)
    assert routing is not None
    t0 = datetime.fromisoformat(routing.updated_at) + timedelta(seconds=1)
    served, shadow, events = [], [], []
    for u in users:
        arm = arm_for(u, routing, settings.serving.release_salt)
        version = routing.canary if arm == "canary" else routing.stable
        rec = {"request_id": f"r{u}", "ts": t0.isoformat(), "user_id": u, "arm": arm}
        served.append(rec | {"model_version": version, "items": MOVIES, "status": 200,
                             "latency_ms": 3.0})  # fmt: skip
        if routing.shadow:
            shadow.append(rec | {"model_version": routing.shadow, "items": MOVIES[:1],
                                 "served_version": version, "served_items": MOVIES,
                                 "latency_ms": 0.1})  # fmt: skip
        if arm in clicks and u % 3:
            events.append(format_watch(t0 + timedelta(minutes=1), u, MOVIES[0], 0))
    events.append(format_watch(t0 + timedelta(hours=2), 99_999, MOVIES[2], 0))
    append_lines(_daily(settings.served_log_file, t0), [json.dumps(r) for r in served])
    if shadow:
        append_lines(_daily(settings.shadow_log_file, t0), [json.dumps(r) for r in shadow])
    append_lines(settings.path(settings.data.event_source), events)


def test_an_equal_canary_ramps_and_the_same_data_decides_once(home: Settings) -> None:
    set_canary(home, "v2", 10, "test")
    _traffic(home, range(3000), clicks={"stable", "canary"})
    first = evaluate_release(home)
    assert first.decision is Decision.RAMP and first.applied, first.reasons
    assert first.arms["canary"].ctr == pytest.approx(2 / 3, abs=0.05)
    assert first.lift.low is not None and -0.5 < first.lift.low < 0 < (first.lift.high or 0)
    assert "users per arm for power 80%" in first.reasons[1]
    routing = read_routing(home)
    assert routing is not None and routing.canary_pct == 20
    assert routing.stage_started_at is not None and routing.stage_started_at < routing.updated_at
    assert [e["decision"] for e in read_json(home.feedback_events_file)] == ["RAMP"]
    metrics = read_json(home.online_metrics_file)
    assert metrics["arms"]["canary"]["model_version"] == "v2"
    # the file keeps its keys: the candidate under "canary", the female/male ratio as before
    assert metrics["canary"] == "v2" and "candidate" not in metrics
    assert "satisfaction_ratio" in metrics["arms"]["canary"]
    assert "female_male_rating_ratio" not in metrics["arms"]["canary"]
    assert metrics["lift"]["low"] == pytest.approx(first.lift.low)

    again = evaluate_release(home)
    assert again.repeated and not again.applied
    assert len(read_json(home.feedback_events_file)) == 1


def test_a_canary_shown_worse_than_the_margin_is_aborted(home: Settings) -> None:
    set_canary(home, "v2", 10, "test")
    _traffic(home, range(3000), clicks={"stable"})  # canary users never click
    result = evaluate_release(home)
    assert result.decision is Decision.ABORT
    assert "shown worse than the margin -50%" in result.reasons[0]
    routing = read_routing(home)
    assert routing is not None and routing.canary is None


def test_the_shadow_result_gates_the_first_canary_step(home: Settings) -> None:
    set_shadow(home, "v2", 100, "test")
    _traffic(home, range(600), clicks={"stable"})  # the candidate's list holds what was watched
    result = evaluate_release(home)
    assert result.stage == "shadow" and result.decision is Decision.RAMP, result.reasons
    assert result.shadow is not None and result.shadow.ratio == pytest.approx(1.0)
    routing = read_routing(home)
    assert routing is not None
    assert (routing.stage, routing.canary, routing.canary_pct) == ("canary", "v2", 10)


def test_a_shadow_that_would_have_missed_everything_is_aborted(home: Settings) -> None:
    set_shadow(home, "v2", 100, "test")
    routing = read_routing(home)
    assert routing is not None
    t0 = datetime.fromisoformat(routing.updated_at) + timedelta(seconds=1)
    lines, events = [], []
    for u in range(600):
        lines.append(json.dumps({"request_id": f"r{u}", "ts": t0.isoformat(), "user_id": u,
                                 "model_version": "v2", "items": ["up+2009"],
                                 "served_version": "v1", "served_items": MOVIES,
                                 "latency_ms": 0.1}))  # fmt: skip
        events.append(format_watch(t0 + timedelta(minutes=1), u, MOVIES[1], 0))
    events.append(format_watch(t0 + timedelta(hours=2), 99_999, MOVIES[2], 0))
    append_lines(_daily(home.shadow_log_file, t0), lines)
    append_lines(home.path(home.data.event_source), events)
    result = evaluate_release(home)
    assert result.decision is Decision.ABORT and "shadow: shown far worse" in result.reasons[0]
    assert read_routing(home).stage == "stable"  # type: ignore[union-attr]


def test_no_candidate_is_no_decision(home: Settings) -> None:
    set_canary(home, "v2", 10, "test")
    abort_canary(home, "test")
    _traffic(home, range(50), clicks=set())
    result = evaluate_release(home)
    assert result.decision is Decision.NONE
    assert read_json(home.feedback_events_file, default=[]) == []


def test_the_design_rule_stays_available(home: Settings) -> None:
    design = home.replace(release_rule="design")
    set_canary(design, "v2", 10, "test")
    _traffic(design, range(3000), clicks={"stable", "canary"})
    result = evaluate_release(design)
    assert result.rule == "design" and result.decision is Decision.RAMP
