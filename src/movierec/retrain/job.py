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
6. promote   - `routing.json` gets the candidate as canary at `initial_canary_pct` (the
               commit point of a promotion), then the state is updated.

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
from typing import Any

from movierec.core.errors import LockBusy, MovierecError
from movierec.core.faults import fault_point
from movierec.core.files import append_lines, atomic_write_json, exclusive_lock, read_json
from movierec.core.settings import Settings

log = logging.getLogger(__name__)

STEPS = ("lock", "refresh", "gate", "train", "compare", "promote", "state")


class ExitCode(enum.IntEnum):
    """What a retrain run tells cron."""

    PROMOTED = 0
    ERROR = 1
    NOTHING_TO_DO = 3
    REJECTED = 4
    BUSY = 5


@dataclass(frozen=True)
class DataCounts:
    """What the lake holds: the gate compares these between runs."""

    users: int
    interactions: int
    ratings: int

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> DataCounts:
        d = d or {}
        return cls(int(d.get("users", 0)), int(d.get("interactions", 0)), int(d.get("ratings", 0)))


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

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out["code"] = int(self.code)
        return out


# ---- state and log --------------------------------------------------------------------------


def read_state(settings: Settings) -> dict[str, Any]:
    """The last successful retrain's record, or {} before the first."""
    state = read_json(settings.retrain_state_file, default={})
    if not isinstance(state, dict):
        raise MovierecError(f"{settings.retrain_state_file}: expected a JSON object")
    return state


def write_state(settings: Settings, version: str, decision: str, counts: DataCounts) -> None:
    atomic_write_json(
        settings.retrain_state_file,
        {
            "version": version,
            "decision": decision,
            "counts": asdict(counts),
            "finished_at": datetime.now(UTC).isoformat(),
        },
    )


def _log_step(settings: Settings, step: str, seconds: float, **fields: Any) -> None:
    record = {"ts": datetime.now(UTC).isoformat(), "step": step, "seconds": round(seconds, 3)}
    record.update(fields)
    append_lines(settings.logs_path / "retrain.log", [json.dumps(record, default=str)])
    log.info("retrain %s (%.2fs) %s", step, seconds, fields)


@contextmanager
def _step(settings: Settings, name: str, info: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Time a step and log it with whatever the block put in `info`."""
    fault_point(f"retrain.{name}")
    start = time.perf_counter()
    try:
        yield info
    except BaseException as exc:
        _log_step(settings, name, time.perf_counter() - start, error=repr(exc), **info)
        raise
    _log_step(settings, name, time.perf_counter() - start, **info)


# ---- the job --------------------------------------------------------------------------------


def lake_counts(settings: Settings) -> DataCounts:
    """Users, interactions and ratings in the lake right now."""
    from movierec.data.lake import load_lake

    lake = load_lake(settings)
    return DataCounts(
        users=int(lake.interactions["user_id"].nunique()) if len(lake.interactions) else 0,
        interactions=len(lake.interactions),
        ratings=len(lake.ratings),
    )


def retrain(settings: Settings, *, force: bool = False) -> RetrainResult:
    """One cron run. `force` skips the data gate (never the comparison)."""
    try:
        with exclusive_lock(settings.data_path / "retrain.lock"):
            return _retrain_locked(settings, force=force)
    except LockBusy as exc:
        _log_step(settings, "lock", 0.0, decision="busy", reason=str(exc))
        return RetrainResult(ExitCode.BUSY, "busy", str(exc))


def _retrain_locked(settings: Settings, *, force: bool) -> RetrainResult:
    from movierec.data.ingest import ingest

    _recover(settings)
    with _step(settings, "refresh", {}) as info:
        refreshed = ingest(settings)
        info["refresh"] = getattr(refreshed, "summary", lambda: str(refreshed))()

    with _step(settings, "gate", {}) as info:
        counts = lake_counts(settings)
        before = DataCounts.from_dict(read_state(settings).get("counts"))
        new_users = counts.users - before.users
        new_inter = counts.interactions - before.interactions
        passed = force or (
            new_users >= settings.retraining.gate_min_new_users
            and new_inter >= settings.retraining.gate_min_new_interactions
        )
        info.update(new_users=new_users, new_interactions=new_inter, passed=passed)
        if counts.interactions == 0:
            passed = False
            info["passed"] = False
    if not passed:
        reason = (
            f"gate not met: {new_users} new users (need {settings.retraining.gate_min_new_users}), "
            f"{new_inter} new interactions (need {settings.retraining.gate_min_new_interactions})"
        )
        _log_step(settings, "decision", 0.0, decision="nothing_to_do", reason=reason)
        return RetrainResult(
            ExitCode.NOTHING_TO_DO,
            "nothing_to_do",
            reason,
            counts=counts,
            new_users=new_users,
            new_interactions=new_inter,
        )

    from movierec.retrain.training import train_candidate

    with _step(settings, "train", {}) as info:
        trained = train_candidate(settings, tune=True, record_provenance=False)
        candidate = trained.version
        cand_metrics = _metrics_of(trained.metrics)
        info.update(candidate=candidate, metrics=cand_metrics)

    with _step(settings, "compare", {"candidate": candidate}) as info:
        stable, stable_metrics = _stable_metrics(settings)
        promote, reason = decide_promotion(settings, cand_metrics, stable_metrics)
        info.update(stable=stable, stable_metrics=stable_metrics, promote=promote, reason=reason)

    result = RetrainResult(
        ExitCode.PROMOTED if promote else ExitCode.REJECTED,
        "promoted" if promote else "rejected",
        reason,
        candidate=candidate,
        stable=stable,
        candidate_metrics=cand_metrics,
        stable_metrics=stable_metrics or {},
        counts=counts,
        new_users=new_users,
        new_interactions=new_inter,
    )
    from movierec.core.provenance import append_model

    if promote:
        with _step(settings, "promote", {"candidate": candidate}) as info:
            atomic_write_json(
                _pending_file(settings), {"version": candidate, "counts": asdict(counts)}
            )
            append_model(settings, trained.record)
            routing = _route_candidate(settings, candidate, stable, reason)
            info["routing"] = asdict(routing)
    with _step(settings, "state", {"decision": result.decision}):
        if not promote:
            append_model(settings, trained.record)  # kept for audit, never routed
        write_state(settings, candidate, result.decision, counts)
        _pending_file(settings).unlink(missing_ok=True)
    if not promote:
        _apply_retention(settings)
    _log_step(settings, "decision", 0.0, decision=result.decision, reason=reason)
    return result


def decide_promotion(
    settings: Settings, candidate: dict[str, float], stable: dict[str, float] | None
) -> tuple[bool, str]:
    """Promote only on a real RMSE gain that does not cost ranking quality."""
    if stable is None:
        return True, "no stable model is deployed: the first model becomes the canary"
    c_rmse, s_rmse = candidate["rmse"], stable["rmse"]
    if not c_rmse < s_rmse - settings.retraining.promote_rmse_margin:
        return False, (
            f"RMSE {c_rmse:.6f} does not beat stable's {s_rmse:.6f} "
            f"by more than {settings.retraining.promote_rmse_margin:g}"
        )
    c_ndcg, s_ndcg = candidate.get("ndcg@10"), stable.get("ndcg@10")
    if (
        c_ndcg is not None
        and s_ndcg is not None
        and c_ndcg < s_ndcg - settings.retraining.promote_ndcg_tolerance
    ):
        return False, (
            f"RMSE improves ({c_rmse:.6f} < {s_rmse:.6f}) but NDCG@10 {c_ndcg:.4f} is worse "
            f"than stable's {s_ndcg:.4f} by more than {settings.retraining.promote_ndcg_tolerance:g}"
        )
    return True, f"RMSE {c_rmse:.6f} < stable's {s_rmse:.6f}; NDCG@10 {c_ndcg} vs {s_ndcg}"


def _metrics_of(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}


def _stable_metrics(settings: Settings) -> tuple[str | None, dict[str, float] | None]:
    """The deployed stable model's holdout metrics, re-evaluated when its recorded ones were
    measured on another holdout (hash mismatch)."""
    from movierec.data.holdout import holdout_sha256
    from movierec.registry.bundles import load_metadata
    from movierec.registry.routing import read_routing
    from movierec.retrain.training import evaluate_version

    routing = read_routing(settings)
    if routing is None:
        return None, None
    meta = load_metadata(settings, routing.stable)
    if meta.get("holdout_sha256") == holdout_sha256(settings) and meta.get("metrics"):
        return routing.stable, _metrics_of(meta["metrics"])
    return routing.stable, _metrics_of(evaluate_version(settings, routing.stable))


def _route_candidate(settings: Settings, candidate: str, stable: str | None, reason: str) -> Any:
    from movierec.registry.routing import set_canary, set_stable

    if stable is None:
        return set_stable(settings, candidate, f"retrain: first model ({reason})")
    return set_canary(
        settings, candidate, settings.release.initial_canary_pct, f"retrain: {reason}"
    )


def _pending_file(settings: Settings) -> Path:
    return settings.data_path / "retrain_pending.json"


def _recover(settings: Settings) -> None:
    """Finish or discard the promotion of a run that was killed before its state write.

    The intent (version and counts) is written before routing changes. If routing shows the
    version, the promotion happened and only the state is missing: write it. If not, the run
    died before its commit point: forget the intent.
    """
    from movierec.registry.routing import read_routing

    pending = read_json(_pending_file(settings))
    if not pending:
        return
    routing = read_routing(settings)
    if routing is not None and pending["version"] in (routing.stable, routing.canary):
        log.warning("recovering the state of an interrupted retrain that routed %s", pending)
        write_state(
            settings, pending["version"], "promoted", DataCounts.from_dict(pending["counts"])
        )
        _log_step(settings, "recover", 0.0, version=pending["version"])
    _pending_file(settings).unlink(missing_ok=True)


def _apply_retention(settings: Settings) -> None:
    """Keep the newest `keep_rejected_models` unrouted bundles for audit; delete the rest."""
    from movierec.registry.bundles import delete_bundle, list_versions
    from movierec.registry.routing import read_routing

    routing = read_routing(settings)
    keep = {routing.stable, routing.canary} if routing else set()
    history = _routed_versions(settings)
    unrouted = [v for v in list_versions(settings) if v not in keep and v not in history]
    for version in unrouted[: max(0, len(unrouted) - settings.retraining.keep_rejected_models)]:
        log.info("retention: deleting rejected bundle %s", version)
        delete_bundle(settings, version)


def _routed_versions(settings: Settings) -> set[str]:
    """Every version that was ever stable or canary (kept: a past request may trace to it)."""
    seen: set[str] = set()
    path = settings.routing_history_file
    if not path.exists():
        return seen
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            for part in (entry, entry.get("after") or {}, entry.get("before") or {}):
                if isinstance(part, dict):
                    seen.update(v for v in (part.get("stable"), part.get("canary")) if v)
    return seen
