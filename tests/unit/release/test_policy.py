"""The decision rules on hand-made evidence."""

from __future__ import annotations

from pathlib import Path

import pytest

from movierec.core.online_metrics import ArmMetrics
from movierec.core.settings import ReleaseSettings, Settings
from movierec.release.policy import (
    Decision,
    Evidence,
    ShadowEvidence,
    decide_design,
    decide_noninferiority,
    decide_shadow,
    fairness_breaches,
    guardrail_breaches,
)
from movierec.release.stats import Interval

REL = ReleaseSettings(noninferiority_margin=0.10, min_users_per_arm=50, min_samples_per_arm=100)


def _ev(low: float, high: float, **kw: object) -> Evidence:
    base: dict[str, object] = {
        "pct": 10,
        "lift": Interval((low + high) / 2, low, high),
        "users": (500, 4500),
        "required": (400, 3600),
        "step_requests": 600,
        "step_hours": 1.0,
    }
    base.update(kw)
    return Evidence(**base)  # type: ignore[arg-type]


def test_the_interval_against_the_margin_decides() -> None:
    assert decide_noninferiority(_ev(-0.05, 0.08), REL)[0] is Decision.RAMP
    assert decide_noninferiority(_ev(-0.05, 0.08, pct=100), REL)[0] is Decision.PROMOTE
    decision, reasons = decide_noninferiority(_ev(-0.30, -0.12), REL)
    assert decision is Decision.ABORT and "shown worse than the margin -10%" in reasons[0]
    # straddling the margin: inconclusive, whatever the point estimate says
    decision, reasons = decide_noninferiority(_ev(-0.15, 0.02), REL)
    assert decision is Decision.HOLD and "inconclusive" in reasons[0]
    assert "users per arm for power 80% at margin 10%: canary 400, stable 3600" in reasons[1]


def test_no_conclusion_below_the_floor_of_users_or_before_the_steps_dwell() -> None:
    decision, reasons = decide_noninferiority(_ev(-0.05, 0.08, step_requests=20), REL)
    assert decision is Decision.HOLD and "this step has 20 canary requests" in reasons[0]
    decision, reasons = decide_noninferiority(_ev(-0.5, -0.2, users=(20, 600)), REL)
    assert decision is Decision.HOLD and "fewer than 50 users in an arm" in reasons[0]
    # the interval is valid at every look: a conclusive one ends the step before the sample
    # that the power calculation plans for an equal canary
    assert decide_noninferiority(_ev(-0.05, 0.08, users=(60, 600)), REL)[0] is Decision.RAMP
    assert decide_noninferiority(_ev(-0.5, -0.2, users=(60, 600)), REL)[0] is Decision.ABORT


def test_an_inconclusive_step_aborts_past_its_time_and_says_so() -> None:
    decision, reasons = decide_noninferiority(_ev(-0.15, 0.02, step_hours=30.0), REL)
    assert decision is Decision.ABORT
    assert reasons[0].startswith("inconclusive after 30.0 h at 10% (limit 24.0 h)")
    _, reasons = decide_noninferiority(_ev(-0.15, 0.02, step_hours=0.05), REL.__class__(
        max_step_hours=0.04, min_users_per_arm=50, min_samples_per_arm=100))  # fmt: skip
    assert reasons[0].startswith("inconclusive after 3.0 min at 10% (limit 2.4 min)")


def test_guardrails_abort_first() -> None:
    decision, reasons = decide_noninferiority(_ev(-0.05, 0.08, breaches=("p99 high",)), REL)
    assert (decision, reasons) == (Decision.ABORT, ["p99 high"])
    slow = ArmMetrics(arm="canary", model_version="v2", requests=20, latency_p99_ms=900.0)
    assert guardrail_breaches(REL, slow) == ["canary p99 latency 900 ms > 600 ms"]


def _fair(group_low: float, group_high: float, users: int = 80) -> ArmMetrics:
    m = ArmMetrics(arm="canary", model_version="v2")
    m.satisfaction_by_group = {
        "age:<18": {"users": users, "ratio": (group_low + group_high) / 2, "low": group_low,
                    "high": group_high},
    }  # fmt: skip
    return m


def test_fairness_acts_on_the_interval_not_the_point() -> None:
    # point 0.80 is outside [0.85, 1.15], but the interval reaches into it: no breach
    assert fairness_breaches(REL, _fair(0.70, 0.90)) == []
    breach = fairness_breaches(REL, _fair(0.60, 0.80))
    assert breach and "age:<18" in breach[0] and "[0.600, 0.800]" in breach[0]
    assert fairness_breaches(REL, _fair(0.60, 0.80, users=10)) == []  # too few users


def test_the_shadow_gate_stops_broken_candidates_only() -> None:
    def ev(low: float, high: float, **kw: object) -> ShadowEvidence:
        base: dict[str, object] = {
            "ratio": Interval((low + high) / 2, low, high),
            "users": 300,
            "mature_requests": 900,
            "hours": 1.0,
        }
        base.update(kw)
        return ShadowEvidence(**base)  # type: ignore[arg-type]

    shadow = ReleaseSettings(shadow_min_ratio=0.1, min_users_per_arm=50, min_samples_per_arm=100)
    assert decide_shadow(ev(0.6, 0.9), shadow)[0] is Decision.RAMP
    # far below stable's hits but not shown below the floor: the canary stage will judge
    assert decide_shadow(ev(0.05, 0.3), shadow)[0] is Decision.RAMP
    decision, reasons = decide_shadow(ev(0.0, 0.06), shadow)
    assert decision is Decision.ABORT and "shown far worse" in reasons[0]
    decision, reasons = decide_shadow(ev(0.6, 0.9, mature_requests=10), shadow)
    assert decision is Decision.HOLD and "still sampling" in reasons[0]
    assert decide_shadow(ev(0.0, 0.06, users=10), shadow)[0] is Decision.HOLD
    assert decide_shadow(ev(0.6, 0.9, users=10, hours=25.0), shadow)[0] is Decision.ABORT


def _arm(mature: int, ctr: float, **kw: float) -> ArmMetrics:
    m = ArmMetrics(arm="canary", model_version="v2", requests=mature, mature_requests=mature)
    m.ctr, m.clicks = ctr, int(ctr * mature)
    for k, v in kw.items():
        setattr(m, k, v)
    return m


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({}, home=tmp_path, min_samples_per_arm=100)


def test_the_design_rule(settings: Settings) -> None:
    assert decide_design(settings, 10, _arm(50, 0.4), 0.4, 500)[0] is Decision.HOLD
    assert decide_design(settings, 10, _arm(500, 0.4), 0.4, 50)[0] is Decision.HOLD
    assert decide_design(settings, 10, _arm(500, 0.4), 0.4, 500)[0] is Decision.RAMP
    assert decide_design(settings, 100, _arm(500, 0.4), 0.4, 0)[0] is Decision.PROMOTE
    # below 10% absolute, or below 70% of stable: a canary 25% worse passes
    assert decide_design(settings, 10, _arm(500, 0.05), 0.06, 500)[0] is Decision.ABORT
    assert decide_design(settings, 10, _arm(500, 0.2), 0.4, 500)[0] is Decision.ABORT
    assert decide_design(settings, 10, _arm(500, 0.3), 0.4, 500)[0] is Decision.RAMP
    # unfair to one gender
    unfair = _arm(500, 0.4, female_male_rating_ratio=0.7)
    assert decide_design(settings, 10, unfair, 0.4, 500)[0] is Decision.ABORT
    # guardrails abort even before there are enough samples
    errs = _arm(20, 0.4, error_rate=0.5)
    decision, reasons = decide_design(settings, 10, errs, 0.4, 500)
    assert decision is Decision.ABORT and "error rate" in reasons[0]
    slow = _arm(20, 0.4, latency_p99_ms=900.0)
    assert decide_design(settings, 10, slow, 0.4, 500)[0] is Decision.ABORT
