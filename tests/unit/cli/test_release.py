"""`movierec release`: exit codes cron can act on, and overrides recorded with who and why."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

import pytest

from movierec.cli import main
from movierec.core.files import read_json
from movierec.core.provenance import read_overrides
from movierec.core.settings import Settings
from movierec.core.vocabulary import Decision
from movierec.registry.routing import read_routing, set_canary, set_shadow, set_stable
from movierec.release import evaluator
from tests.conftest import make_settings
from tests.servicekit import make_bundle


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("MOVIEREC_HOME", str(tmp_path))
    s = make_settings(tmp_path)
    for v in ("v1", "v2"):
        make_bundle(s, v, v)
    set_stable(s, "v1", "test")
    return s


class _Result:
    def __init__(self, decision: Decision):
        self.decision = decision

    def summary(self) -> dict[str, Any]:
        return {"decision": str(self.decision), "stage": "canary", "reasons": ["r"],
                "lift": {}, "pct_before": 10, "pct_after": 10}  # fmt: skip


@pytest.mark.parametrize(
    ("decision", "code"),
    [(Decision.ABORT, 3), (Decision.RAMP, 0), (Decision.HOLD, 0), (Decision.PROMOTE, 0)],
)
def test_evaluate_exits_3_on_abort_only(
    home: Settings, monkeypatch: pytest.MonkeyPatch, decision: Decision, code: int
) -> None:
    monkeypatch.setattr(evaluator, "evaluate_release", lambda *a, **kw: _Result(decision))
    assert main(["release", "evaluate"]) == code


def test_evaluate_exits_1_on_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOVIEREC_HOME", str(tmp_path))  # no routing.json: a known error
    assert main(["release", "evaluate", "--no-refresh"]) == 1


def test_the_exit_codes_are_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["release", "evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "3 the decision was ABORT" in text and "1 an error" in text


def test_force_promote_needs_force_and_is_recorded_with_who_and_why(home: Settings) -> None:
    set_canary(home, "v2", 30, "test")
    assert main(["release", "promote", "--reason", "hotfix"]) == 2
    assert read_routing(home).canary == "v2"  # type: ignore[union-attr]
    assert main(["release", "promote", "--force", "--reason", "hotfix for the outage"]) == 0
    routing = read_routing(home)
    assert routing is not None and (routing.stable, routing.canary) == ("v2", None)
    assert "by " + getpass.getuser() in routing.reason
    event = read_json(home.feedback_events_file)[-1]
    assert event["override"] is True and event["decision"] == "PROMOTE"
    assert (event["user"], event["reason"]) == (getpass.getuser(), "hotfix for the outage")
    (record,) = read_overrides(home)
    assert (record.action, record.candidate, record.stable_before, record.stable_after) == (
        "force-promote",
        "v2",
        "v1",
        "v2",
    )
    assert record.user == getpass.getuser() and record.canary_pct == 30


def test_abort_of_a_shadow_is_recorded(home: Settings) -> None:
    set_shadow(home, "v2", 20, "test")
    assert main(["release", "abort", "--reason", "  "]) == 1  # a blank reason is refused
    assert main(["release", "abort", "--reason", "looks wrong"]) == 0
    assert read_routing(home).stage == "stable"  # type: ignore[union-attr]
    (record,) = read_overrides(home)
    assert (record.action, record.stage, record.reason) == ("abort", "shadow", "looks wrong")
    assert main(["release", "abort", "--reason", "again"]) == 1  # nothing left to abort
