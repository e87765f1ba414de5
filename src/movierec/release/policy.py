"""The decision rules: RAMP / HOLD / ABORT / PROMOTE from what the evaluator measured.

`decide_noninferiority` (the default, `release_rule=noninferiority`): guardrails first (error
rate, p99 latency, fairness by gender and age group acted on through intervals); then the
always-valid interval of the canary's relative CTR lift against the tolerated margin: ABORT
when the whole interval lies below -margin, RAMP (PROMOTE at 100%) when it lies above
-margin and the step has had its own traffic, HOLD otherwise; a step that stays inconclusive
past `max_step_hours` aborts, and says so. The interval is valid at every look, so it may end
a step as soon as it is conclusive; the power calculation (the users per arm at which an
equal canary's interval clears the margin with probability `release_power`) tunes where the
interval is tightest and is printed with every decision, as the sample an inconclusive step
should expect to need. Below `min_users_per_arm` the normal approximation is not trusted and
nothing is concluded.

`decide_shadow`: the shadow gate before any user sees the candidate: ABORT when the interval
of (candidate's hits / stable's hits on the same requests) lies below `shadow_min_ratio`,
RAMP to the first canary step once the shadow has its sample and is not shown so (HOLD while
sampling, ABORT if the sample does not come in time). Users saw stable's list, not the
candidate's, so this ratio leans towards stable and mostly measures how much the two lists
agree: the gate stops broken candidates, not merely different ones.

`decide_design`: the design's first rule, kept as a setting and as the baseline of the
decision-accuracy study: canary CTR >= `ctr_min_abs` and >= `ctr_min_rel` of stable's,
satisfaction ratio in range, at least `min_samples_per_arm` mature requests per arm.
"""

from __future__ import annotations

from dataclasses import dataclass

from movierec.core.online_metrics import ArmMetrics, Interval
from movierec.core.settings import ReleaseSettings, Settings
from movierec.core.vocabulary import Decision


@dataclass(frozen=True)
class Evidence:
    """What the non-inferiority rule looks at: the canary stage so far, and this step."""

    pct: int
    lift: Interval  # canary CTR / stable CTR - 1, always-valid, over the stage
    users: tuple[int, int]  # (canary, stable) users in the stage
    required: tuple[int, int]  # (canary, stable) users an equal canary needs (power)
    step_requests: int  # the canary's mature requests in this step
    step_hours: float  # how long this step has run
    breaches: tuple[str, ...] = ()  # guardrails breached


@dataclass(frozen=True)
class ShadowEvidence:
    ratio: Interval  # candidate's hits / stable's hits on the same requests
    users: int
    mature_requests: int
    hours: float


def _duration(hours: float) -> str:
    return f"{hours * 60:.1f} min" if hours < 1 else f"{hours:.1f} h"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.1%}"


def describe_lift(lift: Interval) -> str:
    return f"CTR lift {_pct(lift.value)}, interval [{_pct(lift.low)}, {_pct(lift.high)}]"


def power_note(ev: Evidence, rel: ReleaseSettings) -> str:
    return (
        f"users per arm for power {rel.release_power:.0%} at margin "
        f"{rel.noninferiority_margin:.0%}: canary {ev.required[0]}, stable {ev.required[1]}; "
        f"have {ev.users[0]}, {ev.users[1]}"
    )


def decide_noninferiority(ev: Evidence, rel: ReleaseSettings) -> tuple[Decision, list[str]]:
    """ABORT on a guardrail or when shown worse than the margin; RAMP/PROMOTE when shown no
    worse with enough users; HOLD while inconclusive; ABORT when a step is inconclusive for
    longer than `max_step_hours`."""
    if ev.breaches:
        return Decision.ABORT, list(ev.breaches)
    margin = rel.noninferiority_margin
    power = power_note(ev, rel)
    lift = ev.lift
    trusted = min(ev.users) >= rel.min_users_per_arm and lift.known
    if trusted and lift.high is not None and lift.high < -margin:
        return Decision.ABORT, [
            f"shown worse than the margin -{margin:.0%}: {describe_lift(lift)}",
            power,
        ]
    dwell = ev.step_requests >= rel.min_samples_per_arm
    if trusted and dwell and lift.low is not None and lift.low > -margin:
        verdict = (
            f"shown no worse than the margin -{margin:.0%} at {ev.pct}%: {describe_lift(lift)}"
        )
        return (Decision.PROMOTE if ev.pct >= 100 else Decision.RAMP), [verdict, power]
    if ev.step_hours > rel.max_step_hours:
        return Decision.ABORT, [
            f"inconclusive after {_duration(ev.step_hours)} at {ev.pct}% (limit "
            f"{_duration(rel.max_step_hours)}): {describe_lift(lift)} against margin "
            f"-{margin:.0%}",
            power,
        ]
    why = describe_lift(lift) + f" against margin -{margin:.0%}"
    if min(ev.users) < rel.min_users_per_arm:
        why += f"; fewer than {rel.min_users_per_arm} users in an arm"
    if not dwell:
        why += (
            f"; this step has {ev.step_requests} canary requests (needs {rel.min_samples_per_arm})"
        )
    return Decision.HOLD, [f"inconclusive: {why}", power]


def decide_shadow(ev: ShadowEvidence, rel: ReleaseSettings) -> tuple[Decision, list[str]]:
    """The shadow gate: ABORT when the candidate's lists are shown to be almost never watched
    (the interval of its hits / stable's hits on the same requests lies below
    `shadow_min_ratio`); otherwise RAMP to the first canary step once the shadow has seen
    its sample (`min_samples_per_arm` mature requests, `min_users_per_arm` users). The
    comparison leans towards stable (users saw stable's list), so the gate stops broken
    candidates only; the canary stage judges the rest."""
    floor = rel.shadow_min_ratio
    r = ev.ratio
    shown = (
        f"candidate/stable hits on the same requests {_ratio(r.value)}, interval "
        f"[{_ratio(r.low)}, {_ratio(r.high)}] against {floor:g} ({ev.users} users, "
        f"{ev.mature_requests} mature requests)"
    )
    sampled = (
        ev.users >= rel.min_users_per_arm
        and ev.mature_requests >= rel.min_samples_per_arm
        and r.known
    )
    if sampled and r.high is not None and r.high < floor:
        return Decision.ABORT, [f"shadow: shown far worse: {shown}"]
    if sampled:
        return Decision.RAMP, [f"shadow passed: {shown}"]
    if ev.hours > rel.max_step_hours:
        return Decision.ABORT, [
            f"shadow without its sample after {_duration(ev.hours)} (limit "
            f"{_duration(rel.max_step_hours)}): {shown}"
        ]
    return Decision.HOLD, [f"shadow still sampling: {shown}"]


def _ratio(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def guardrail_breaches(rel: ReleaseSettings, canary: ArmMetrics) -> list[str]:
    """Every guardrail breach of the canary: each is a reason to abort."""
    return operational_breaches(rel, canary) + fairness_breaches(rel, canary)


def operational_breaches(rel: ReleaseSettings, canary: ArmMetrics) -> list[str]:
    """Error rate and p99 latency, on any evidence (point values)."""
    reasons: list[str] = []
    if canary.requests and canary.error_rate > rel.max_error_rate:
        reasons.append(f"canary error rate {canary.error_rate:.3%} > {rel.max_error_rate:.3%}")
    p99 = canary.latency_p99_ms
    if p99 is not None and p99 > rel.max_p99_latency_ms:
        reasons.append(f"canary p99 latency {p99:.0f} ms > {rel.max_p99_latency_ms:.0f} ms")
    return reasons


def fairness_breaches(rel: ReleaseSettings, canary: ArmMetrics) -> list[str]:
    """A group (gender, age band) whose satisfaction relative to the rest lies, interval and
    all, outside [satisfaction_low, satisfaction_high]."""
    reasons: list[str] = []
    for group, row in sorted(canary.satisfaction_by_group.items()):
        low, high = row.get("low"), row.get("high")
        if row.get("users", 0) < rel.min_users_per_arm or low is None or high is None:
            continue
        if high < rel.satisfaction_low or low > rel.satisfaction_high:
            reasons.append(
                f"satisfaction of {group} relative to the rest [{low:.3f}, {high:.3f}] lies "
                f"outside [{rel.satisfaction_low}, {rel.satisfaction_high}]"
            )
    return reasons


def decide_design(
    settings: Settings,
    pct: int,
    canary: ArmMetrics,
    stable_ctr: float | None,
    stable_requests: int,
) -> tuple[Decision, list[str]]:
    """Guardrails first (they abort on any evidence), then sample size, then ramp/promote."""
    rel = settings.release
    reasons = operational_breaches(rel, canary)
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
    ratio = canary.female_male_rating_ratio
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
