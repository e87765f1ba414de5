"""The evaluator end to end on a tiny home: a served log and an event log written by hand,
real ingest, real routing; the decision moves the canary and is recorded once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from movierec.core.files import append_lines, read_json
from movierec.core.settings import Settings
from movierec.data.events import format_watch
from movierec.registry.routing import abort_canary, arm_for, read_routing, set_canary, set_stable
from movierec.release.evaluator import evaluate_release
from movierec.release.policy import Decision
from tests.conftest import make_settings
from tests.servicekit import make_bundle

MOVIES = ["heat+1995", "alien+1979", "jaws+1975"]


@pytest.fixture
def home(tmp_path: Path) -> Settings:
    s = make_settings(tmp_path, min_samples_per_arm=5)
    make_bundle(s, "v1", "one")
    make_bundle(s, "v2", "two")
    set_stable(s, "v1", "test")
    set_canary(s, "v2", 10, "test")
    return s


def _traffic(settings: Settings, users: range, clicked: bool) -> None:
    """One request per user after the routing changed; each user starts watching its first
    movie a minute later when `clicked`; a late event makes every request mature."""
    routing = read_routing(settings)
    assert routing is not None
    t0 = datetime.fromisoformat(routing.updated_at) + timedelta(seconds=1)
    served, events = [], []
    for u in users:
        arm = arm_for(u, routing, settings.serving.release_salt)
        version = routing.canary if arm == "canary" else routing.stable
        served.append(
            {
                "request_id": f"r{u}",
                "ts": t0.isoformat(),
                "user_id": u,
                "arm": arm,
                "model_version": version,
                "items": MOVIES,
                "latency_ms": 3.0,
                "status": 200,
            }
        )
        if clicked:
            events.append(format_watch(t0 + timedelta(minutes=1), u, MOVIES[0], 0))
    events.append(format_watch(t0 + timedelta(hours=2), 99_999, MOVIES[2], 0))
    day = t0.astimezone(UTC).date().isoformat()
    log_file = settings.served_log_file
    append_lines(
        log_file.with_name(f"{log_file.stem}-{day}{log_file.suffix}"),
        [json.dumps(r) for r in served],
    )
    append_lines(settings.path(settings.data.event_source), events)


def test_a_decision_moves_the_canary_and_the_same_data_decides_once(home: Settings) -> None:
    _traffic(home, range(300), clicked=True)
    first = evaluate_release(home)
    assert first.decision is Decision.RAMP and first.applied
    assert first.arms["canary"].ctr == pytest.approx(1.0)
    routing = read_routing(home)
    assert routing is not None and routing.canary_pct == 20
    assert [e["decision"] for e in read_json(home.feedback_events_file)] == ["RAMP"]
    metrics = read_json(home.online_metrics_file)
    assert metrics["arms"]["canary"]["model_version"] == "v2"

    again = evaluate_release(home)
    assert again.repeated and not again.applied
    assert len(read_json(home.feedback_events_file)) == 1
    routing = read_routing(home)
    assert routing is not None and routing.canary_pct == 20


def test_no_canary_is_no_decision(home: Settings) -> None:
    abort_canary(home, "test")
    _traffic(home, range(50), clicked=False)
    result = evaluate_release(home)
    assert result.decision is Decision.NONE
    assert read_json(home.feedback_events_file, default=[]) == []
