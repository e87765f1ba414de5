"""The movierec_online_* gauges follow the evaluator's online_metrics.json: values, units,
missing arms, re-reading only on change, and the multiprocess aggregation under gunicorn."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from movierec.core.files import atomic_write_json
from movierec.core.online_metrics import ArmMetrics
from movierec.core.settings import Settings
from movierec.registry.routing import set_stable
from movierec.release.evaluator import ReleaseResult, metrics_record
from movierec.release.policy import Decision
from movierec.serve import create_app, metrics
from tests.servicekit import make_bundle

EVALUATED = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _record(
    stable_ctr: float | None = 0.2, canary_ctr: float | None = 0.15, canary: bool = True
) -> dict[str, object]:
    """online_metrics.json as the evaluator writes it (its own record builder)."""
    arms = {
        "stable": ArmMetrics(
            arm="stable",
            model_version="v1",
            requests=900,
            recommendations=18_000,
            mature_requests=800,
            ctr=stable_ctr,
            errors=9,
            error_rate=0.01,
            latency_p99_ms=42.0,
            female_male_rating_ratio=0.97,
        ),
        "canary": ArmMetrics(
            arm="canary",
            model_version="v2" if canary else None,
            requests=100 if canary else 0,
            recommendations=2_000 if canary else 0,
            mature_requests=90 if canary else 0,
            ctr=canary_ctr if canary else None,
            error_rate=0.0,
            latency_p99_ms=55.0 if canary else None,
            female_male_rating_ratio=1.2 if canary else None,
        ),
    }
    result = ReleaseResult(
        decision=Decision.HOLD,
        reasons=["too few samples"],
        stage="canary",
        pct_before=10,
        pct_after=10,
        stable="v1",
        candidate="v2" if canary else None,
        arms=arms,
        period_start=None,
        key="k",
        applied=False,
    )
    record = metrics_record(result)
    record["evaluated_at"] = EVALUATED.isoformat()
    return record


def _value(name: str, arm: str | None = "stable") -> float | None:
    return REGISTRY.get_sample_value(name, {"arm": arm} if arm else {})


def _write(path: Path, record: dict[str, object]) -> None:
    atomic_write_json(path, record)
    # a rewrite within the file system's timestamp resolution must still look different
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_the_service_reads_the_file_the_evaluator_writes(settings: Settings) -> None:
    app = create_app(settings)
    try:
        gauges: metrics.OnlineGauges = app.extensions["movierec"].online
        assert gauges.path == settings.online_metrics_file
    finally:
        app.extensions["movierec"].models.stop()


def test_gauges_carry_the_evaluators_numbers(tmp_path: Path) -> None:
    path = tmp_path / "online_metrics.json"
    gauges = metrics.OnlineGauges(path, check_seconds=0)
    _write(path, _record())
    assert gauges.refresh()
    assert _value("movierec_online_ctr") == pytest.approx(0.2)
    assert _value("movierec_online_ctr", "canary") == pytest.approx(0.15)
    assert _value("movierec_online_satisfaction_ratio", "canary") == pytest.approx(1.2)
    assert _value("movierec_online_error_rate") == pytest.approx(0.01)
    assert _value("movierec_online_latency_p99_seconds") == pytest.approx(0.042)
    assert _value("movierec_online_requests") == 900
    assert _value("movierec_online_mature_requests", "canary") == 90
    assert _value("movierec_online_recommendations") == 18_000
    assert _value("movierec_online_evaluated_timestamp_seconds", None) == EVALUATED.timestamp()


def test_values_the_file_lacks_become_nan(tmp_path: Path) -> None:
    """No canary (or no clicks measured yet): NaN, which matches no alert threshold, rather
    than the previous canary's numbers."""
    path = tmp_path / "online_metrics.json"
    gauges = metrics.OnlineGauges(path, check_seconds=0)
    _write(path, _record())
    assert gauges.refresh()
    _write(path, _record(stable_ctr=None, canary=False))
    assert gauges.refresh()
    for name in ("movierec_online_ctr", "movierec_online_satisfaction_ratio"):
        assert math.isnan(_value(name, "canary") or 0.0), name
    assert math.isnan(_value("movierec_online_ctr") or 0.0)
    assert _value("movierec_online_requests", "canary") == 0
    assert _value("movierec_online_satisfaction_ratio") == pytest.approx(0.97)
    path.unlink()
    assert gauges.refresh()
    assert math.isnan(_value("movierec_online_requests") or 0.0)
    assert math.isnan(_value("movierec_online_evaluated_timestamp_seconds", None) or 0.0)


def test_the_file_is_parsed_only_when_it_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "online_metrics.json"
    parses: list[int] = []
    real_loads = metrics.json.loads
    monkeypatch.setattr(metrics.json, "loads", lambda b: parses.append(1) or real_loads(b))
    gauges = metrics.OnlineGauges(path, check_seconds=0)
    assert not gauges.refresh()  # no file yet: nothing to publish, nothing parsed
    _write(path, _record(stable_ctr=0.3))
    assert gauges.refresh()
    for _ in range(5):
        assert not gauges.refresh()
    assert len(parses) == 1
    _write(path, _record(stable_ctr=0.4))
    assert gauges.refresh()
    assert len(parses) == 2 and _value("movierec_online_ctr") == pytest.approx(0.4)


def test_the_file_is_looked_at_at_most_once_per_check_interval(tmp_path: Path) -> None:
    path = tmp_path / "online_metrics.json"
    gauges = metrics.OnlineGauges(path, check_seconds=3600)
    _write(path, _record(stable_ctr=0.25))
    assert gauges.refresh()
    _write(path, _record(stable_ctr=0.35))
    assert not gauges.refresh()  # changed, but checked less than an interval ago
    assert _value("movierec_online_ctr") == pytest.approx(0.25)
    gauges._checked -= 3600
    assert gauges.refresh()
    assert _value("movierec_online_ctr") == pytest.approx(0.35)


def test_an_unreadable_file_keeps_the_previous_values(tmp_path: Path) -> None:
    path = tmp_path / "online_metrics.json"
    gauges = metrics.OnlineGauges(path, check_seconds=0)
    _write(path, _record(stable_ctr=0.33))
    assert gauges.refresh()
    path.write_text('{"arms": ')  # not what the atomic writer leaves, but possible by hand
    assert not gauges.refresh()
    path.write_text("[1, 2]")
    assert not gauges.refresh()
    assert _value("movierec_online_ctr") == pytest.approx(0.33)
    wrong = _record(stable_ctr=0.5)
    wrong["arms"]["stable"]["requests"] = "many"  # type: ignore[index]
    _write(path, wrong)  # its one reader refuses it: the previous numbers stay
    gauges.refresh()
    assert _value("movierec_online_ctr") == pytest.approx(0.33)


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    make_bundle(settings, "v1", "one")
    set_stable(settings, "v1", "test")
    app = create_app(settings)
    yield app
    app.extensions["movierec"].models.stop()
    app.extensions["movierec"].served.close()


def test_metrics_endpoint_republishes_a_new_file_and_requests_never_look(
    app: Flask, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = app.test_client()
    state = app.extensions["movierec"]
    state.online.check_seconds = 0
    _write(settings.online_metrics_file, _record(stable_ctr=0.123))
    text = client.get("/metrics").get_data(as_text=True)
    assert 'movierec_online_ctr{arm="stable"} 0.123' in text
    assert 'movierec_online_latency_p99_seconds{arm="canary"} 0.055' in text

    calls: list[int] = []
    monkeypatch.setattr(state.online, "refresh", lambda: calls.append(1) or False)
    for u in range(10):
        assert client.get(f"/recommend/{u}").status_code == 200
    assert calls == []
    client.get("/metrics")
    assert calls == [1]


_WORKER = """
import sys
from pathlib import Path
from movierec.serve import metrics
assert metrics.OnlineGauges(Path(sys.argv[1])).refresh()
sys.stdout.write(metrics.render()[0].decode())
"""


def test_workers_aggregate_to_the_most_recent_reading(tmp_path: Path) -> None:
    """Under gunicorn every worker writes its own copy; /metrics must show one value per
    series, the newest - even when it is lower than an older worker's ("max" would not)."""
    path = tmp_path / "online_metrics.json"
    prom = tmp_path / "prom"
    prom.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(prom)}

    def worker() -> str:
        run = subprocess.run(
            [sys.executable, "-c", _WORKER, str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        return run.stdout

    _write(path, _record(stable_ctr=0.9, canary_ctr=0.8))
    worker()
    _write(path, _record(stable_ctr=0.2, canary_ctr=None))
    text = worker()
    samples = [
        (s.name, s.labels.get("arm"), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "movierec_online_ctr"
    ]
    assert len(samples) == 2, samples
    values = {arm: value for _, arm, value in samples}
    assert values["stable"] == pytest.approx(0.2)
    assert math.isnan(values["canary"])


def test_gauges_carry_online_rmse_watch_completion_and_the_lift(tmp_path: Path) -> None:
    path = tmp_path / "online_metrics.json"
    gauges = metrics.OnlineGauges(path, check_seconds=0)
    record = _record()
    record["arms"]["canary"] |= {  # type: ignore[index]
        "online_rmse": 0.93,
        "minutes_per_viewing": 61.5,
        "completed_share": 0.4,
        "users": 321,
    }
    record["lift"] = {"value": -0.02, "low": -0.08, "high": 0.04}
    record["margin"] = 0.1
    _write(path, record)
    assert gauges.refresh()
    assert _value("movierec_online_rmse", "canary") == pytest.approx(0.93)
    assert _value("movierec_online_minutes_per_viewing", "canary") == pytest.approx(61.5)
    assert _value("movierec_online_completed_viewing_share", "canary") == pytest.approx(0.4)
    assert _value("movierec_online_users", "canary") == 321
    assert math.isnan(_value("movierec_online_rmse") or 0.0)  # stable's was not measured

    def lift(bound: str) -> float | None:
        return REGISTRY.get_sample_value("movierec_online_ctr_lift", {"bound": bound})

    assert (lift("estimate"), lift("low"), lift("high"), lift("margin")) == pytest.approx(
        (-0.02, -0.08, 0.04, -0.1)
    )
