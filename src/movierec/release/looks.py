"""A look: what one evaluation measures at the routing's stage, and the rule's decision.

`shadow_look` (a shadow candidate, no canary): paired hit rates of stable's and the
candidate's lists on the sampled requests since the stage began. `noninferiority_look` (a
canary, the default rule): the canary's users against the stable's over the whole canary
stage (the always-valid interval of the CTR lift and the power calculation), and this step's
own traffic for its guardrails and its dwell. `design_look`: the design's rule on the step's
traffic. `stable_look`: no candidate, stable's metrics and no decision.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TypedDict

import pandas as pd

from movierec.core.errors import MovierecError
from movierec.core.online_metrics import (
    ArmMetrics,
    Interval,
    OnlineMetrics,
    read_feedback_events,
)
from movierec.core.settings import Settings
from movierec.core.vocabulary import Arm, Decision, Stage
from movierec.data.lake import LakeTables
from movierec.model.recommender import load_recommender
from movierec.registry.bundles import bundle_path, verify_bundle
from movierec.registry.routing import Routing
from movierec.release.datagaps import DataGaps
from movierec.release.online import ArmData, ArmEvents, ArmLook, Predictor, observe_arm
from movierec.release.policy import (
    Evidence,
    ShadowEvidence,
    decide_design,
    decide_noninferiority,
    decide_shadow,
    guardrail_breaches,
)
from movierec.release.shadow_evidence import ShadowMetrics, shadow_metrics
from movierec.release.stats import (
    lift_interval,
    planned_rho,
    ratio_estimate,
    required_users,
    unit_variance,
)

log = logging.getLogger(__name__)


@dataclass
class ReleaseResult:
    decision: Decision
    reasons: list[str]
    stage: Stage
    pct_before: int
    pct_after: int
    stable: str | None
    candidate: str | None  # the version under evaluation: the canary, or the shadow
    arms: dict[Arm, ArmMetrics]
    lift: Interval = field(default_factory=Interval)
    margin: float | None = None
    required_users: dict[str, int] = field(default_factory=dict)
    shadow: ShadowMetrics | None = None
    step: StepSummary | None = None  # the current canary step (non-inferiority rule)
    rule: str = ""
    period_start: str | None = None
    key: str = ""
    applied: bool = False
    repeated: bool = False
    data_gaps: DataGaps = field(default_factory=DataGaps)  # served-log records lost

    def summary(self) -> dict[str, object]:
        """The result as online_metrics.json and feedback_events.json hold it (without
        `evaluated_at`)."""
        return self.online_metrics(None).to_json()

    def online_metrics(self, evaluated_at: str | None) -> OnlineMetrics:
        """The record of online_metrics.json: the candidate under "canary", as always."""
        details = asdict(self)
        for shared in ("arms", "lift", "margin"):
            del details[shared]
        details["decision"] = str(self.decision)
        details["stage"] = str(self.stage)
        details["canary"] = details.pop("candidate")
        details["step"] = details["step"] or {}
        return OnlineMetrics(self.arms, self.lift, self.margin, evaluated_at, details)


@dataclass
class Inputs:
    """What every look reads once."""

    routing: Routing
    lake: LakeTables
    users: pd.DataFrame
    served: pd.DataFrame
    predictors: dict[str, Predictor | None] = field(default_factory=dict)  # loaded once


# ---- helpers ---------------------------------------------------------------------------------


def _since(frame: pd.DataFrame, start: str | None) -> pd.DataFrame:
    if not len(frame) or not start:
        return frame
    return frame[frame["ts"] >= pd.Timestamp(start)]


def _predictor(settings: Settings, version: str) -> Predictor | None:
    """The version's rating model, for online RMSE (None when it cannot be loaded)."""
    try:
        path = bundle_path(settings, version)
        verify_bundle(path)
        return load_recommender(path, mmap=True).predict_ratings
    except (MovierecError, OSError, KeyError, ValueError) as exc:
        log.info("no rating model for %s (online RMSE unknown): %s", version, exc)
        return None


def _observe(
    settings: Settings,
    inputs: Inputs,
    start: str | None,
    arm: str,
    version: str | None,
    rmse: bool = True,
) -> ArmData:
    """One arm's metrics over the requests served by `version` since `start` (online RMSE
    with `rmse`: it loads the version's rating model, once per evaluation)."""
    period = _since(inputs.served, start)
    rows = period[(period["arm"] == arm) & (period["model_version"] == version)]
    rel = settings.release
    predict = None
    if rmse and version is not None and len(rows):
        if version not in inputs.predictors:
            inputs.predictors[version] = _predictor(settings, version)
        predict = inputs.predictors[version]
    events = ArmEvents(rows, inputs.lake.watches, inputs.lake.ratings, inputs.users)
    look = ArmLook(
        timedelta(minutes=rel.click_window_minutes),
        arm,
        version,
        predict,
        completed_minutes=rel.completed_viewing_minutes,
        alpha=rel.release_alpha,
    )
    return observe_arm(events, look)


def _hours_since(start: str | None) -> float:
    if not start:
        return 0.0
    return (datetime.now(UTC) - datetime.fromisoformat(start)).total_seconds() / 3600.0


# ---- looks ----------------------------------------------------------------------------------


def _result(
    inputs: Inputs,
    decision: Decision,
    reasons: list[str],
    arms: dict[Arm, ArmMetrics],
    period_start: str | None,
) -> ReleaseResult:
    """The decision on the routing as it stands; a look adds its own evidence."""
    r = inputs.routing
    return ReleaseResult(
        decision=decision,
        reasons=reasons,
        stage=r.stage,
        pct_before=r.canary_pct,
        pct_after=r.canary_pct,
        stable=r.stable,
        candidate=r.candidate,
        arms=arms,
        period_start=period_start,
    )


def stable_look(settings: Settings, inputs: Inputs) -> ReleaseResult:
    """No candidate: stable's metrics since the routing changed, and no decision."""
    r = inputs.routing
    stable = _observe(settings, inputs, r.updated_at, "stable", r.stable).metrics
    arms: dict[Arm, ArmMetrics] = {
        "stable": stable,
        "canary": ArmMetrics(arm="canary", model_version=None),
    }
    return _result(inputs, Decision.NONE, ["no candidate: nothing to release"], arms, r.updated_at)


def shadow_look(settings: Settings, inputs: Inputs, shadow_log: pd.DataFrame) -> ReleaseResult:
    """The shadow stage: paired hit rates on the sampled requests since the stage began."""
    r, rel = inputs.routing, settings.release
    start = r.stage_started_at or r.updated_at
    stable = _observe(settings, inputs, start, "stable", r.stable).metrics
    rows = _since(shadow_log, start)
    rows = rows[(rows["model_version"] == r.shadow) & (rows["served_version"] == r.stable)]
    tolerance = 1.0 - rel.shadow_min_ratio
    rho = planned_rho(tolerance, rel.release_alpha, rel.release_power)
    sm = shadow_metrics(
        rows,
        inputs.lake.watches,
        window=timedelta(minutes=rel.click_window_minutes),
        candidate=r.shadow,
        alpha=rel.release_alpha,
        rho=rho,
    )
    ratio = Interval(sm.ratio, sm.ratio_low, sm.ratio_high)
    ev = ShadowEvidence(ratio, sm.users, sm.mature_requests, _hours_since(start))
    decision, reasons = decide_shadow(ev, rel)
    arms: dict[Arm, ArmMetrics] = {
        "stable": stable,
        "canary": ArmMetrics(arm="canary", model_version=r.shadow),
    }
    return replace(_result(inputs, decision, reasons, arms, start), shadow=sm, rule="shadow")


def noninferiority_look(settings: Settings, inputs: Inputs) -> ReleaseResult:
    """The canary stage under the non-inferiority rule."""
    r, rel = inputs.routing, settings.release
    start = r.stage_started_at or r.updated_at
    canary = _observe(settings, inputs, start, "canary", r.canary)
    stable = _observe(settings, inputs, start, "stable", r.stable)
    step = _observe(settings, inputs, r.updated_at, "canary", r.canary, rmse=False).metrics
    lift, required = _lift_and_power(settings, canary, stable)
    ev = Evidence(
        pct=r.canary_pct,
        lift=lift,
        users=(canary.metrics.users, stable.metrics.users),
        required=required,
        step_requests=step.mature_requests,
        step_hours=_hours_since(r.updated_at),
        breaches=tuple(guardrail_breaches(rel, _step_guardrails(step, canary.metrics))),
    )
    decision, reasons = decide_noninferiority(ev, rel)
    arms: dict[Arm, ArmMetrics] = {"stable": stable.metrics, "canary": canary.metrics}
    return replace(
        _result(inputs, decision, reasons, arms, start),
        lift=lift,
        margin=rel.noninferiority_margin,
        required_users={"canary": required[0], "stable": required[1]},
        step=_step_summary(step, ev),
        rule="noninferiority",
    )


def _step_guardrails(step: ArmMetrics, stage: ArmMetrics) -> ArmMetrics:
    """Errors and latency of this step (the new load), fairness of the whole stage (it needs
    the users)."""
    return ArmMetrics(
        arm="canary",
        model_version=step.model_version,
        requests=step.requests,
        error_rate=step.error_rate,
        latency_p99_ms=step.latency_p99_ms,
        satisfaction_by_group=stage.satisfaction_by_group,
    )


class StepSummary(TypedDict):
    """What the current canary step served (its own traffic, for the guardrails)."""

    requests: int
    mature_requests: int
    error_rate: float
    latency_p99_ms: float | None
    hours: float


def _step_summary(step: ArmMetrics, ev: Evidence) -> StepSummary:
    return {
        "requests": step.requests,
        "mature_requests": step.mature_requests,
        "error_rate": step.error_rate,
        "latency_p99_ms": step.latency_p99_ms,
        "hours": round(ev.step_hours, 3),
    }


def _lift_and_power(
    settings: Settings, canary: ArmData, stable: ArmData
) -> tuple[Interval, tuple[int, int]]:
    """The always-valid interval of the relative CTR lift, and the users per arm that the
    power calculation asks for (from the stable users' spread)."""
    rel = settings.release
    c, s = (a.per_user[a.per_user["requests"] > 0] for a in (canary, stable))
    est_c = ratio_estimate(c["clicks"], c["requests"])
    est_s = ratio_estimate(s["clicks"], s["requests"])
    share = len(c) / (len(c) + len(s)) if len(c) + len(s) else rel.initial_canary_pct / 100
    args = (rel.noninferiority_margin, rel.release_alpha, rel.release_power)
    required = required_users(*args, unit_variance(est_s), share)
    return lift_interval(est_c, est_s, *args), required


def design_look(settings: Settings, inputs: Inputs) -> ReleaseResult:
    """The canary step under the design's rule (per request, the step's own traffic)."""
    r, rel = inputs.routing, settings.release
    canary = _observe(settings, inputs, r.updated_at, "canary", r.canary).metrics
    stable = _observe(settings, inputs, r.updated_at, "stable", r.stable).metrics
    enough = stable.mature_requests >= rel.min_samples_per_arm
    stable_ctr = stable.ctr if enough else _last_stable_ctr(settings, r.stable)
    decision, reasons = decide_design(
        settings, r.canary_pct, canary, stable_ctr, stable.mature_requests
    )
    arms: dict[Arm, ArmMetrics] = {"stable": stable, "canary": canary}
    return replace(_result(inputs, decision, reasons, arms, r.updated_at), rule="design")


def _last_stable_ctr(settings: Settings, stable: str) -> float | None:
    """Stable's CTR from the latest decision that measured it on enough requests (at 100%
    canary stable serves only the stragglers of the switch)."""
    path = settings.feedback_events_file
    for event in reversed(read_feedback_events(path)):
        arm = OnlineMetrics.from_json(event, str(path)).arms.get("stable")
        if (
            arm is not None
            and arm.model_version == stable
            and arm.ctr is not None
            and arm.mature_requests >= settings.release.min_samples_per_arm
        ):
            return arm.ctr
    return None
