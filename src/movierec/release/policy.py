"""The decision rule: RAMP / HOLD / ABORT / PROMOTE from the canary's metrics."""

from __future__ import annotations

import enum

from movierec.core.settings import Settings
from movierec.release.online import ArmMetrics


class Decision(enum.StrEnum):
    RAMP = "RAMP"
    HOLD = "HOLD"
    ABORT = "ABORT"
    PROMOTE = "PROMOTE"
    NONE = "NONE"  # no canary to evaluate


def decide(
    settings: Settings,
    pct: int,
    canary: ArmMetrics,
    stable_ctr: float | None,
    stable_requests: int,
) -> tuple[Decision, list[str]]:
    """Guardrails first (they abort on any evidence), then sample size, then ramp/promote."""
    rel = settings.release
    reasons = _guardrails(settings, canary)
    enough = canary.mature_requests >= rel.min_samples_per_arm and (
        stable_requests >= rel.min_samples_per_arm or pct == 100
    )
    if reasons:
        return Decision.ABORT, reasons
    if not enough:
        return Decision.HOLD, [
            f"too few samples: canary {canary.mature_requests}, stable {stable_requests} "
            f"(need {rel.min_samples_per_arm} each)"
        ]
    ctr = canary.ctr or 0.0
    if ctr < rel.ctr_min_abs:
        reasons.append(f"canary CTR {ctr:.3f} < {rel.ctr_min_abs:.3f}")
    if stable_ctr is not None and ctr < rel.ctr_min_rel * stable_ctr:
        reasons.append(f"canary CTR {ctr:.3f} < {rel.ctr_min_rel:.0%} of stable's {stable_ctr:.3f}")
    ratio = canary.satisfaction_ratio
    if ratio is not None and not rel.satisfaction_low <= ratio <= rel.satisfaction_high:
        reasons.append(
            f"satisfaction ratio {ratio:.3f} outside "
            f"[{rel.satisfaction_low}, {rel.satisfaction_high}]"
        )
    if reasons:
        return Decision.ABORT, reasons
    if pct >= 100:
        return Decision.PROMOTE, ["canary healthy at 100%"]
    return Decision.RAMP, [f"canary healthy at {pct}% (CTR {ctr:.3f} vs stable {stable_ctr})"]


def _guardrails(settings: Settings, canary: ArmMetrics) -> list[str]:
    """Errors and latency: each breach is a reason to abort, whatever the sample size."""
    rel = settings.release
    reasons: list[str] = []
    if canary.requests and canary.error_rate > rel.max_error_rate:
        reasons.append(f"canary error rate {canary.error_rate:.3%} > {rel.max_error_rate:.3%}")
    p99 = canary.latency_p99_ms
    if p99 is not None and p99 > rel.max_p99_latency_ms:
        reasons.append(f"canary p99 latency {p99:.0f} ms > {rel.max_p99_latency_ms:.0f} ms")
    return reasons
