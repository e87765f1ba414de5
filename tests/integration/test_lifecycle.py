"""The whole life cycle on real ml-100k with real gunicorn and simulated traffic over loopback
(`movierec demo`), then what the trust tools make of its output: the retrained candidate ramps to
100% and is promoted, a worse one is aborted at its first decision with enough samples, no
request fails, a request the running service answered traces back to its training data, and
the offline and online analyses run on the demo's logs. (The retrained v2 is better offline; online,
in the simulator, it only has to stay above 70% of the stable's CTR.)"""

from __future__ import annotations

import json
from typing import Any

import pytest

from movierec.core.settings import Settings
from movierec.ops.demo import run_demo
from movierec.release.served import load_served, served_log_files
from movierec.trust.analysis import analyze_offline, analyze_online
from movierec.trust.trace import trace
from tests.conftest import make_settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict[str, Any]]:
    s = make_settings(tmp_path_factory.mktemp("demo"), tune_iterations=2, tune_seconds=20.0)
    return s, run_demo(s)


def _rounds(summary: dict[str, Any], canary: str) -> list[dict[str, Any]]:
    return [d for d in summary["decisions"] if d["canary"] == canary]


def test_the_retrained_candidate_ramps_to_100_and_is_promoted(
    demo: tuple[Settings, dict[str, Any]],
) -> None:
    _, summary = demo
    v2 = summary["decisions"][0]["canary"]
    rounds = _rounds(summary, v2)
    acted = [d for d in rounds if d["decision"] != "HOLD"]
    assert [d["decision"] for d in acted] == ["RAMP"] * (len(acted) - 1) + ["PROMOTE"]
    pcts = [d["pct_after"] for d in acted]
    assert pcts[:-1] == sorted(pcts[:-1]) and pcts[-2] == 100 and pcts[-1] == 0
    assert acted[0]["pct_before"] == 10


def test_a_worse_candidate_is_aborted_at_its_first_decision_with_enough_samples(
    demo: tuple[Settings, dict[str, Any]],
) -> None:
    _, summary = demo
    v2 = summary["decisions"][0]["canary"]
    v3 = summary["decisions"][-1]["canary"]
    assert v3 != v2
    acted = [d for d in _rounds(summary, v3) if d["decision"] != "HOLD"]
    assert acted[0]["decision"] == "ABORT" and acted[0]["pct_after"] == 0
    assert summary["versions"]["stable_now"] == v2  # the bad one never became stable


def test_not_one_request_failed(demo: tuple[Settings, dict[str, Any]]) -> None:
    s, summary = demo
    assert summary["failed_requests"] == 0
    served = load_served(served_log_files(s))
    assert len(served) > 3000 and (served["status"] == 200).all()
    assert (s.path("reports") / "demo_report.md").exists()
    assert (s.path("reports") / "demo_release.png").stat().st_size > 1000


def test_a_request_the_running_service_answered_traces_to_its_training_data(
    demo: tuple[Settings, dict[str, Any]],
) -> None:
    s, summary = demo
    served = load_served(served_log_files(s))
    row = served[served["model_version"] == summary["versions"]["stable_now"]].iloc[-1]
    t = trace(s, str(row["request_id"]))
    assert t.prediction is not None and t.prediction["user_id"] == row["user_id"]
    assert t.model["version"] == row["model_version"]
    assert len(t.model["git_commit"]) >= 7
    assert t.bundle_verified and t.data_file_matches
    assert t.data["rows"] > 0 and t.model["metrics"]["rmse"] > 0


def test_the_analyses_run_on_the_demos_output(demo: tuple[Settings, dict[str, Any]]) -> None:
    s, _ = demo
    offline = analyze_offline(s)
    out = json.loads(offline.json_path.read_text())
    assert 0.1 < out["top10pct_movies_share_of_interactions"] < 0.9, out
    assert offline.plots and all(p.exists() for p in offline.plots)
    online = analyze_online(s)
    windows = json.loads(online.json_path.read_text())["windows"]
    assert windows and any("canary" in w["arms"] for w in windows)
    ctrs = [a["ctr"] for w in windows for a in w["arms"].values() if a["ctr"] is not None]
    assert ctrs and all(0 <= c <= 1 for c in ctrs)
