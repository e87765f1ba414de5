"""The decision rule on hand-made arm metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from movierec.core.settings import Settings
from movierec.release.online import ArmMetrics
from movierec.release.policy import Decision, decide


def _arm(mature: int, ctr: float, **kw: float) -> ArmMetrics:
    m = ArmMetrics(arm="canary", model_version="v2", requests=mature, mature_requests=mature)
    m.ctr, m.clicks = ctr, int(ctr * mature)
    for k, v in kw.items():
        setattr(m, k, v)
    return m


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({}, home=tmp_path, min_samples_per_arm=100)


def test_decisions(settings: Settings) -> None:
    assert decide(settings, 10, _arm(50, 0.4), 0.4, 500)[0] is Decision.HOLD
    assert decide(settings, 10, _arm(500, 0.4), 0.4, 50)[0] is Decision.HOLD
    assert decide(settings, 10, _arm(500, 0.4), 0.4, 500)[0] is Decision.RAMP
    assert decide(settings, 100, _arm(500, 0.4), 0.4, 0)[0] is Decision.PROMOTE
    # below 10% absolute, or below 70% of stable
    assert decide(settings, 10, _arm(500, 0.05), 0.06, 500)[0] is Decision.ABORT
    assert decide(settings, 10, _arm(500, 0.2), 0.4, 500)[0] is Decision.ABORT
    # unfair to one gender
    assert (
        decide(settings, 10, _arm(500, 0.4, satisfaction_ratio=0.7), 0.4, 500)[0] is Decision.ABORT
    )
    # guardrails abort even before there are enough samples
    errs = _arm(20, 0.4, error_rate=0.5)
    errs.requests = 20
    decision, reasons = decide(settings, 10, errs, 0.4, 500)
    assert decision is Decision.ABORT and "error rate" in reasons[0]
    slow = _arm(20, 0.4, latency_p99_ms=900.0)
    assert decide(settings, 10, slow, 0.4, 500)[0] is Decision.ABORT
