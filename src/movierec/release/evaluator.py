"""The online evaluator: per-arm metrics from the served log and the event stream, and the
release decision RAMP / HOLD / ABORT / PROMOTE that moves the canary.

Period. A decision looks only at requests served since the routing last changed
(`routing.updated_at`), by the versions routing names now, so stable and canary are compared
over the same period and each ramp step is judged on its own traffic. A decision is keyed by
the data watermark (newest served request, newest event): running the evaluator twice on the
same data makes no second decision.

Files. The latest metrics go to `Settings.online_metrics_file` (the service republishes them
on /metrics); each decision, with its metrics, is appended to `Settings.feedback_events_file`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from movierec.core.errors import DataNotFoundError
from movierec.core.files import atomic_write_json, exclusive_lock, read_json, sha256_bytes
from movierec.core.settings import Settings
from movierec.data.ingest import ingest
from movierec.data.lake import LakeTables, load_lake
from movierec.data.movielens import load_tables
from movierec.registry.routing import (
    Routing,
    abort_canary,
    promote_canary,
    read_routing,
    write_routing,
)
from movierec.release.datagaps import gap_reason, served_log_gaps
from movierec.release.online import ArmMetrics, compute_arm_metrics
from movierec.release.policy import Decision, decide
from movierec.release.served import load_served, served_log_files
from movierec.release.stats import Comparison, two_proportion_test

log = logging.getLogger(__name__)


@dataclass
class ReleaseResult:
    decision: Decision
    reasons: list[str]
    pct_before: int
    pct_after: int
    stable: str | None
    canary: str | None
    arms: dict[str, ArmMetrics]
    comparison: Comparison
    period_start: str | None
    key: str
    applied: bool
    repeated: bool = False
    data_gaps: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out["decision"] = str(self.decision)
        return out


def evaluate_release(
    settings: Settings, *, apply: bool = True, refresh: bool = True
) -> ReleaseResult:
    """Read the logs, compute per-arm metrics, decide, and (with `apply`) move the canary."""
    with exclusive_lock(settings.data_path / "release.lock", wait=True):
        return _evaluate_locked(settings, apply=apply, refresh=refresh)


def _evaluate_locked(settings: Settings, *, apply: bool, refresh: bool) -> ReleaseResult:
    # Load
    if refresh:
        ingest(settings)
    routing = _routing(settings)
    lake = load_lake(settings)
    served = load_served(served_log_files(settings))
    # Metrics
    arms = _period_metrics(settings, routing, served, lake, _users(settings))
    stable, canary = arms["stable"], arms["canary"]
    stable_ctr = _stable_reference(settings, routing, stable)
    comparison = two_proportion_test(
        canary.clicks, canary.mature_requests, stable.clicks, stable.mature_requests
    )
    # Decision
    if routing.canary is None:
        decision, reasons = Decision.NONE, ["no canary: nothing to release"]
    else:
        decision, reasons = decide(
            settings, routing.canary_pct, canary, stable_ctr, stable.mature_requests
        )
    result = ReleaseResult(
        decision=decision,
        reasons=reasons,
        pct_before=routing.canary_pct,
        pct_after=routing.canary_pct,
        stable=routing.stable,
        canary=routing.canary,
        arms=arms,
        comparison=comparison,
        period_start=routing.updated_at,
        key=_watermark(served, lake),
        applied=False,
        data_gaps=served_log_gaps(settings, routing.updated_at),
    )
    gap = gap_reason(result.data_gaps)
    if gap:
        result.reasons.append(gap)
    atomic_write_json(settings.online_metrics_file, metrics_record(result))
    # Once per watermark: apply and record
    history = read_json(settings.feedback_events_file, default=[])
    if any(e.get("key") == result.key for e in history):
        result.repeated = True
        log.info("no new data since decision %s: no second decision", result.key)
        return result
    if decision is Decision.NONE:
        return result
    if apply:
        _apply(settings, routing, result)
    history.append(metrics_record(result))
    atomic_write_json(settings.feedback_events_file, history)
    return result


def _routing(settings: Settings) -> Routing:
    routing = read_routing(settings)
    if routing is None:
        raise DataNotFoundError(
            f"{settings.routing_file} does not exist: train and serve a model first "
            "(movierec train --serve-if-none)"
        )
    return routing


def _users(settings: Settings) -> pd.DataFrame:
    try:
        return load_tables(settings, settings.data.dataset).users
    except Exception as exc:  # demographics are optional: satisfaction is then unknown
        log.warning("no demographics for the satisfaction ratio: %s", exc)
        return pd.DataFrame(columns=["user_id", "gender"])


def _period_metrics(
    settings: Settings,
    routing: Routing,
    served: pd.DataFrame,
    lake: LakeTables,
    users: pd.DataFrame,
) -> dict[str, ArmMetrics]:
    """Each arm's metrics over the requests served since routing last changed, by the
    versions routing names now."""
    start = pd.Timestamp(routing.updated_at)
    period = served[served["ts"] >= start] if len(served) else served
    window = timedelta(minutes=settings.release.click_window_minutes)
    arms: dict[str, ArmMetrics] = {}
    for arm, version in (("stable", routing.stable), ("canary", routing.canary)):
        rows = period[(period["arm"] == arm) & (period["model_version"] == version)]
        arms[arm] = compute_arm_metrics(
            rows,
            lake.watches,
            lake.ratings,
            users,
            window=window,
            arm=arm,
            model_version=version,
        )
    return arms


def _stable_reference(settings: Settings, routing: Routing, stable: ArmMetrics) -> float | None:
    """Stable's CTR; at 100% canary stable serves only the stragglers of the switch, so its
    reference is what it did before, measured on enough requests."""
    if stable.mature_requests >= settings.release.min_samples_per_arm:
        return stable.ctr
    return _last_stable_ctr(settings, routing.stable)


def _last_stable_ctr(settings: Settings, stable: str) -> float | None:
    """Stable's CTR from the latest decision that measured it on enough requests."""
    for event in reversed(read_json(settings.feedback_events_file, default=[])):
        arm = event.get("arms", {}).get("stable", {})
        if (
            arm.get("model_version") == stable
            and arm.get("ctr") is not None
            and arm.get("mature_requests", 0) >= settings.release.min_samples_per_arm
        ):
            return float(arm["ctr"])
    return None


def _watermark(served: pd.DataFrame, lake: LakeTables) -> str:
    """The data watermark: the same logs decide once, whatever the routing became since."""
    newest_served = str(served["ts"].max()) if len(served) else None
    newest_event = str(lake.watches["ts"].max()) if len(lake.watches) else None
    return sha256_bytes(json.dumps([newest_served, newest_event], default=str).encode())[:16]


def _apply(settings: Settings, routing: Routing, result: ReleaseResult) -> None:
    """Move the canary as decided: one ramp step, back to stable, or promoted."""
    decision = result.decision
    reason = f"{decision}: " + "; ".join(result.reasons)
    pct_after = routing.canary_pct
    if decision is Decision.RAMP:
        pct_after = min(100, routing.canary_pct + settings.release.ramp_step_pct)
        write_routing(
            settings,
            Routing(
                stable=routing.stable,
                canary=routing.canary,
                canary_pct=pct_after,
                updated_at=datetime.now(UTC).isoformat(),
                reason=reason,
            ),
        )
    elif decision is Decision.ABORT:
        pct_after = abort_canary(settings, reason).canary_pct
    elif decision is Decision.PROMOTE:
        pct_after = promote_canary(settings, reason).canary_pct
    result.pct_after = pct_after
    result.applied = decision is not Decision.HOLD


def metrics_record(result: ReleaseResult) -> dict[str, Any]:
    record = result.summary()
    record["evaluated_at"] = datetime.now(UTC).isoformat()
    return record
