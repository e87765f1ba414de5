"""The cron-run retrainer: refresh the data, gate on new data, train, compare, promote.

Steps, each logged as one JSON line in `logs/retrain.log` with its duration and decision:

1. lock      - `data/retrain.lock`; a second run exits at once with BUSY.
2. refresh   - the DataPipeline ingests what arrived since the last run.
3. gate      - at least `gate_min_new_users` new users and `gate_min_new_interactions` new
               (user, movie) interactions since the last successful retrain
               (`data/retrain_state.json`); otherwise NOTHING_TO_DO.
4. train     - a candidate is tuned, trained and evaluated on the fixed holdout, and its
               bundle registered (written atomically; invisible to routing).
5. compare   - against the deployed stable model on the same holdout: promoted only when its
               RMSE is lower by more than `promote_rmse_margin` and its NDCG@10 is not worse
               by more than `promote_ndcg_tolerance`.
6. promote   - `routing.json` gets the candidate in shadow on `shadow_sample_pct`% of
               requests (or, with 0, as a canary at `initial_canary_pct`): the commit point
               of a promotion; then the state is updated. The online evaluator takes it on.

Crash safety: every write is atomic, and the state is written last. The state is recoverable
from an intent file written just before the routing change, so a run killed between the
routing change and the state write is finished by the next run (`_recover`) instead of
training again. A run killed before the routing change leaves routing, state and provenance
as they were, except an unrouted bundle kept for audit.
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from movierec.core.errors import LockBusy, MovierecError
from movierec.core.faults import fault_point
from movierec.core.files import append_lines, atomic_write_json, exclusive_lock, read_json
from movierec.core.provenance import append_model
from movierec.core.settings import Settings
from movierec.data.ingest import ingest
from movierec.offline.metric_functions import headline
from movierec.registry.bundles import delete_bundle, list_versions
from movierec.registry.routing import read_routing, routed_versions
from movierec.retrain.gate import DataCounts, Gate, check_gate, read_state, write_state
from movierec.retrain.promotion import decide_promotion, route_candidate, stable_metrics
from movierec.retrain.training import TrainResult, train_candidate

log = logging.getLogger(__name__)


class ExitCode(enum.IntEnum):
    """What a retrain run tells cron."""

    PROMOTED = 0
    ERROR = 1
    NOTHING_TO_DO = 3
    REJECTED = 4
    BUSY = 5


@dataclass
class RetrainResult:
    code: ExitCode
    decision: str
    reason: str
    candidate: str | None = None
    stable: str | None = None
    candidate_metrics: dict[str, float] = field(default_factory=dict)
    stable_metrics: dict[str, float] = field(default_factory=dict)
    counts: DataCounts | None = None
    new_users: int = 0
    new_interactions: int = 0

    def summary(self) -> dict[str, object]:
        out = asdict(self)
        out["code"] = int(self.code)
        return out


# ---- the job --------------------------------------------------------------------------------


def retrain(settings: Settings, *, force: bool = False) -> RetrainResult:
    """One cron run. `force` skips the data gate (never the comparison)."""
    try:
        with exclusive_lock(settings.data_path / "retrain.lock"):
            return _retrain_locked(settings, force=force)
    except LockBusy as exc:
        _log_step(settings, "lock", 0.0, decision="busy", reason=str(exc))
        return RetrainResult(ExitCode.BUSY, "busy", str(exc))


def _retrain_locked(settings: Settings, *, force: bool) -> RetrainResult:
    read_state(settings)  # a corrupt state file stops the run before anything is written
    _recover(settings)
    # Refresh: ingest what arrived since the last run
    with _step(settings, "refresh", {}) as info:
        info["refresh"] = ingest(settings).summary()
    # Gate: enough new data?
    with _step(settings, "gate", {}) as info:
        gate = check_gate(settings, force=force)
        info.update(new_users=gate.new_users, new_interactions=gate.new_interactions)
        info["passed"] = gate.passed
    if not gate.passed:
        return _nothing_to_do(settings, gate)
    # Train: a tuned candidate, evaluated on the fixed holdout, registered but not routed
    with _step(settings, "train", {}) as info:
        trained = train_candidate(settings, tune=True, record_provenance=False)
        info.update(candidate=trained.version, metrics=headline(trained.metrics))
    # Compare: against the deployed stable model on the same holdout
    with _step(settings, "compare", {"candidate": trained.version}) as info:
        result = _compare(settings, trained, gate)
        info.update(stable=result.stable, stable_metrics=result.stable_metrics)
        info.update(promote=result.code is ExitCode.PROMOTED, reason=result.reason)
    # Promote (the commit point) and remember what this run saw
    if result.code is ExitCode.PROMOTED:
        _promote(settings, trained, result, gate.counts)
    with _step(settings, "state", {"decision": result.decision}):
        if result.code is not ExitCode.PROMOTED:
            append_model(settings, trained.record)  # kept for audit, never routed
        write_state(settings, trained.version, result.decision, gate.counts)
        _pending_file(settings).unlink(missing_ok=True)
    if result.code is not ExitCode.PROMOTED:
        _apply_retention(settings)
    _log_step(settings, "decision", 0.0, decision=result.decision, reason=result.reason)
    return result


def _nothing_to_do(settings: Settings, gate: Gate) -> RetrainResult:
    reason = f"gate not met: {gate.reason}"
    _log_step(settings, "decision", 0.0, decision="nothing_to_do", reason=reason)
    return RetrainResult(
        ExitCode.NOTHING_TO_DO,
        "nothing_to_do",
        reason,
        counts=gate.counts,
        new_users=gate.new_users,
        new_interactions=gate.new_interactions,
    )


def _compare(settings: Settings, trained: TrainResult, gate: Gate) -> RetrainResult:
    candidate = headline(trained.metrics)
    stable, reference = stable_metrics(settings)
    promote, reason = decide_promotion(settings, candidate, reference)
    return RetrainResult(
        ExitCode.PROMOTED if promote else ExitCode.REJECTED,
        "promoted" if promote else "rejected",
        reason,
        candidate=trained.version,
        stable=stable,
        candidate_metrics=candidate,
        stable_metrics=reference or {},
        counts=gate.counts,
        new_users=gate.new_users,
        new_interactions=gate.new_interactions,
    )


def _promote(
    settings: Settings, trained: TrainResult, result: RetrainResult, counts: DataCounts
) -> None:
    """Intent first (so a kill after the routing change is finished by the next run), then the
    provenance row, then the routing change."""
    with _step(settings, "promote", {"candidate": trained.version}) as info:
        intent = {"version": trained.version, "counts": asdict(counts)}
        atomic_write_json(_pending_file(settings), intent)
        append_model(settings, trained.record)
        routing = route_candidate(settings, trained.version, result.stable, result.reason)
        info["routing"] = asdict(routing)


# ---- log, steps, recovery, retention --------------------------------------------------------


def _log_step(settings: Settings, step: str, seconds: float, **fields: object) -> None:
    record: dict[str, object] = {
        "ts": datetime.now(UTC).isoformat(),
        "step": step,
        "seconds": round(seconds, 3),
    }
    record.update(fields)
    append_lines(settings.logs_path / "retrain.log", [json.dumps(record, default=str)])
    log.info("retrain %s (%.2fs) %s", step, seconds, fields)


@contextmanager
def _step(settings: Settings, name: str, info: dict[str, object]) -> Iterator[dict[str, object]]:
    """Time a step and log it with whatever the block put in `info`; a fault point first."""
    fault_point(f"retrain.{name}")
    start = time.perf_counter()
    try:
        yield info
    except BaseException as exc:
        _log_step(settings, name, time.perf_counter() - start, error=repr(exc), **info)
        raise
    _log_step(settings, name, time.perf_counter() - start, **info)


def _pending_file(settings: Settings) -> Path:
    return settings.data_path / "retrain_pending.json"


def _recover(settings: Settings) -> None:
    """Finish or discard the promotion of a run that was killed before its state write.

    The intent (version and counts) is written before routing changes. If routing shows the
    version, the promotion happened and only the state is missing: write it. If not, the run
    died before its commit point: forget the intent.
    """
    pending = read_json(_pending_file(settings))
    if not pending:
        return
    if not isinstance(pending, dict):
        raise MovierecError(f"{_pending_file(settings)}: not a retrain intent; fix or remove it")
    version = str(pending["version"])
    routing = read_routing(settings)
    if routing is not None and version in (routing.stable, routing.canary, routing.shadow):
        log.warning("recovering the state of an interrupted retrain that routed %s", pending)
        write_state(settings, version, "promoted", DataCounts.from_dict(pending["counts"]))
        _log_step(settings, "recover", 0.0, version=version)
    _pending_file(settings).unlink(missing_ok=True)


def _apply_retention(settings: Settings) -> None:
    """Keep the newest `keep_rejected_models` unrouted bundles for audit; delete the rest."""
    routing = read_routing(settings)
    keep = {routing.stable, routing.canary, routing.shadow} if routing else set()
    history = routed_versions(settings)
    unrouted = [v for v in list_versions(settings) if v not in keep and v not in history]
    for version in unrouted[: max(0, len(unrouted) - settings.retraining.keep_rejected_models)]:
        log.info("retention: deleting rejected bundle %s", version)
        delete_bundle(settings, version)
