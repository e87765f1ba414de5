"""The online evaluator: what the routing's stage measured, and the decision RAMP / HOLD /
ABORT / PROMOTE that moves the candidate.

Stages. While routing names a shadow candidate (no canary), the evaluator compares, on the
sampled requests, the lists stable served with the lists the candidate would have served
(`release.shadow_evidence`); the shadow result gates the first canary step. While a canary is
routed, it compares the canary's users with the stable's (`release.online`, `release.stats`) under
the configured rule (`release.policy`).

Periods. The non-inferiority rule looks at the whole canary stage (since
`routing.stage_started_at`: users keep their arm when the percentage rises, and the
always-valid interval stays valid across looks and steps), and at the current step (since
`routing.updated_at`) for its guardrails and its dwell. The design rule looks at the step
only, as it always did. Only requests served by the versions routing names now count.

Once. A decision is keyed by the data watermark (newest served request, newest shadow record,
newest event): running the evaluator twice on the same data makes no second decision. The
latest metrics go to `Settings.online_metrics_file` (republished on /metrics); each decision,
with its metrics and interval, is appended to `Settings.feedback_events_file`.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pandas as pd

from movierec.core.errors import DataNotFoundError
from movierec.core.files import exclusive_lock, sha256_bytes
from movierec.core.online_metrics import append_feedback_event, read_feedback_events
from movierec.core.settings import Settings
from movierec.core.vocabulary import Decision, Stage
from movierec.data.ingest import ingest
from movierec.data.lake import load_lake
from movierec.data.movielens import load_tables
from movierec.registry.routing import (
    Routing,
    abort_canary,
    promote_canary,
    read_routing,
    set_canary_pct,
    shadow_to_canary,
)
from movierec.release.datagaps import gap_reason, served_log_gaps
from movierec.release.looks import (
    Inputs,
    ReleaseResult,
    design_look,
    noninferiority_look,
    shadow_look,
    stable_look,
)
from movierec.release.served import load_served, load_shadow, served_log_files, shadow_log_files

log = logging.getLogger(__name__)


def evaluate_release(
    settings: Settings, *, apply: bool = True, refresh: bool = True
) -> ReleaseResult:
    """Read the logs, measure the stage, decide, and (with `apply`) move the candidate."""
    with exclusive_lock(settings.data_path / "release.lock", wait=True):
        return _evaluate_locked(settings, apply=apply, refresh=refresh)


def _evaluate_locked(settings: Settings, *, apply: bool, refresh: bool) -> ReleaseResult:
    # Load
    if refresh:
        ingest(settings)
    routing = _routing(settings)
    inputs = Inputs(routing, load_lake(settings), _users(settings), _served(settings))
    shadow_log = load_shadow(shadow_log_files(settings))
    # Measure and decide, by stage and rule
    if routing.stage is Stage.SHADOW:
        result = shadow_look(settings, inputs, shadow_log)
    elif routing.stage is Stage.CANARY and settings.release.release_rule == "design":
        result = design_look(settings, inputs)
    elif routing.stage is Stage.CANARY:
        result = noninferiority_look(settings, inputs)
    else:
        result = stable_look(settings, inputs)
    result.key = _watermark(inputs, shadow_log)
    # Data gaps: served-log records that could not be written in this period
    result.data_gaps = served_log_gaps(settings, routing.updated_at)
    if gap := gap_reason(result.data_gaps):
        result.reasons.append(gap)
    result.online_metrics(_now()).save(settings.online_metrics_file)
    # Once per watermark: apply and record
    history = read_feedback_events(settings.feedback_events_file)
    if any(e.get("key") == result.key for e in history):
        result.repeated = True
        log.info("no new data since decision %s: no second decision", result.key)
        return result
    if result.decision is Decision.NONE:
        return result
    if apply:
        _apply(settings, routing, result)
    append_feedback_event(settings.feedback_events_file, metrics_record(result))
    return result


# ---- inputs ---------------------------------------------------------------------------------


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
        return pd.DataFrame(columns=["user_id", "gender", "age"])


def _served(settings: Settings) -> pd.DataFrame:
    return load_served(served_log_files(settings))


def _watermark(inputs: Inputs, shadow_log: pd.DataFrame) -> str:
    """The data watermark: the same logs decide once, whatever the routing became since."""
    newest = [
        str(frame["ts"].max()) if len(frame) else None
        for frame in (inputs.served, shadow_log, inputs.lake.watches)
    ]
    return sha256_bytes(json.dumps(newest, default=str).encode())[:16]


# ---- applying -------------------------------------------------------------------------------


def _apply(settings: Settings, routing: Routing, result: ReleaseResult) -> None:
    """Move the candidate as decided: shadow to canary, one ramp step, back to stable, or
    promoted."""
    decision = result.decision
    reason = f"{decision}: " + "; ".join(result.reasons)
    pct_after = routing.canary_pct
    if decision is Decision.RAMP and routing.stage is Stage.SHADOW:
        pct_after = shadow_to_canary(
            settings, settings.release.initial_canary_pct, reason
        ).canary_pct
    elif decision is Decision.RAMP:
        pct = min(100, routing.canary_pct + settings.release.ramp_step_pct)
        pct_after = set_canary_pct(settings, pct, reason).canary_pct
    elif decision is Decision.ABORT:
        pct_after = abort_canary(settings, reason).canary_pct
    elif decision is Decision.PROMOTE:
        pct_after = promote_canary(settings, reason).canary_pct
    result.pct_after = pct_after
    result.applied = decision is not Decision.HOLD


def metrics_record(result: ReleaseResult) -> dict[str, object]:
    """The result as online_metrics.json and feedback_events.json hold it, evaluated now."""
    return result.online_metrics(_now()).to_json()


def _now() -> str:
    return datetime.now(UTC).isoformat()
