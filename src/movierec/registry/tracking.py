"""MLflow as a mirror of the registry (optional: `MOVIEREC_MLFLOW_TRACKING_URI`).

Every registered bundle becomes an MLflow run (parameters, tuning trials, offline metrics,
tags: version, git commit, training data id, holdout sha256; the bundle as artifacts) and a
version of the registered model `mlflow_model_name`. Every routing change sets that model's
aliases: `champion` is the stable version, `challenger` the canary (removed when there is
none). `routing.json` stays the one source of truth: MLflow only mirrors it.

MLflow being down never stops a job: each call fails fast (no retries, a short timeout),
is logged as a warning and counted in `tracking_failures` (which the jobs report).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from movierec.core.schema import METADATA
from movierec.core.settings import Settings

if TYPE_CHECKING:  # the optional `tracking` extra, imported when MLflow is configured
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
tracking_failures = 0  # calls that failed in this process (MLflow down, refused, ...)


def enabled(settings: Settings) -> bool:
    return bool(settings.retraining.mlflow_tracking_uri)


def _client(settings: Settings) -> MlflowClient:
    # optional dependency (the `tracking` extra): imported only when MLflow is configured
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=settings.retraining.mlflow_tracking_uri)


def _failed(what: str, exc: BaseException) -> None:
    global tracking_failures
    tracking_failures += 1
    log.warning("MLflow: %s failed, the job goes on without it: %s", what, exc)


def log_bundle(settings: Settings, bundle: Path) -> str | None:
    """A run for the bundle and a registered model version; the run id, or None."""
    if not enabled(settings):
        return None
    try:
        return _log_bundle(settings, bundle)
    except Exception as exc:  # MLflow down or refusing: counted, never fatal
        _failed(f"logging {bundle.name}", exc)
        return None


def _log_bundle(settings: Settings, bundle: Path) -> str:
    meta = json.loads((bundle / METADATA).read_text())
    client = _client(settings)
    experiment = settings.retraining.mlflow_experiment
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    run = client.create_run(experiment_id, run_name=meta["version"], tags=_tags(meta))
    run_id = run.info.run_id
    from mlflow.entities import Metric, Param  # the optional dependency, as in _client

    now = int(time.time() * 1000)
    params = [Param(k, v) for k, v in _flat(meta.get("params", {})).items()]
    metrics = [Metric(k, v, now, 0) for k, v in _numbers(meta.get("metrics", {})).items()]
    trials = meta.get("fit_info", {}).get("tuning_trials", []) or []
    metrics += [
        Metric("tuning_trial_rmse", float(trial["rmse"]), now, step)
        for step, trial in enumerate(trials)
        if isinstance(trial, dict) and isinstance(trial.get("rmse"), int | float)
    ]
    client.log_batch(run_id, metrics=metrics, params=params)
    client.log_text(run_id, json.dumps(trials, indent=2, default=str), "tuning_trials.json")
    client.log_artifacts(run_id, str(bundle), "bundle")
    client.set_terminated(run_id)
    _register_version(client, settings.retraining.mlflow_model_name, meta["version"], run_id)
    return str(run_id)


def _register_version(client: MlflowClient, name: str, version: str, run_id: str) -> None:
    if not client.search_registered_models(filter_string=f"name='{name}'"):
        client.create_registered_model(name)
    client.create_model_version(
        name, source=f"runs:/{run_id}/bundle", run_id=run_id, tags={"movierec_version": version}
    )


def mirror_routing(settings: Settings, stable: str, canary: str | None) -> bool:
    """Aliases `champion` -> stable, `challenger` -> canary (or none). True when mirrored."""
    if not enabled(settings):
        return False
    try:
        client = _client(settings)
        name = settings.retraining.mlflow_model_name
        _alias(client, name, CHAMPION, stable)
        _alias(client, name, CHALLENGER, canary)
        return True
    except Exception as exc:  # MLflow down or refusing: counted, never fatal
        _failed(f"setting aliases (stable {stable}, canary {canary})", exc)
        return False


def _alias(client: MlflowClient, name: str, alias: str, version: str | None) -> None:
    if version is None:
        try:
            client.delete_registered_model_alias(name, alias)
        except Exception:  # no such alias: nothing to remove
            log.debug("no %s alias to remove", alias)
        return
    found = client.search_model_versions(f"name='{name}' and tags.movierec_version='{version}'")
    if not found:
        log.warning(
            "MLflow: %s has no model version for %s (trained before tracking?)", name, version
        )
        return
    client.set_registered_model_alias(name, alias, found[0].version)


def _tags(meta: Mapping[str, object]) -> dict[str, str]:
    return {
        "movierec.version": str(meta.get("version")),
        "movierec.git_commit": str(meta.get("git_commit")),
        "movierec.git_branch": str(meta.get("git_branch")),
        "movierec.git_dirty": str(meta.get("git_dirty")),
        "movierec.training_data_id": str(meta.get("training_data_id")),
        "movierec.holdout_sha256": str(meta.get("holdout_sha256")),
    }


def _flat(params: Mapping[str, object], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = str(value)[:500]
    return out


def _numbers(metrics: Mapping[str, object]) -> dict[str, float]:
    safe = {k.replace("@", "_at_"): v for k, v in metrics.items()}
    return {
        k: float(v)
        for k, v in safe.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
