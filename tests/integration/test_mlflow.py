"""MLflow mirrors the registry, against a real `mlflow server` (SQLite backend): a run per
bundle, and the aliases champion/challenger follow routing.json; MLflow down stops nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from movierec.core.settings import Settings
from movierec.ops.service import free_port
from movierec.registry import tracking
from movierec.registry.bundles import save_bundle
from movierec.registry.routing import promote_canary, read_routing, set_canary, set_stable
from tests.conftest import make_settings
from tests.integration.mlflowserver import mlflow_server


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


def _bundle(settings: Settings, version: str, rmse: float) -> Path:
    meta = {
        "params": {"mf_factors": 32, "xgb": {"eta": 0.05}},
        "metrics": {"rmse": rmse, "ndcg@10": 0.3, "by_group": {"gender": {}}},
        "fit_info": {"tuning_trials": [{"rmse": rmse + 0.02}, {"rmse": rmse}]},
        "training_data_id": f"data-{version}",
        "holdout_sha256": "ab" * 32,
    }
    return save_bundle(settings, version, {"weights.bin": version.encode()}, meta)


def _client(uri: str):  # type: ignore[no-untyped-def]
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


@pytest.mark.slow
def test_runs_and_aliases_follow_the_registry(tracking_uri: str, tmp_path: Path) -> None:
    s = make_settings(tmp_path, mlflow_tracking_uri=tracking_uri, mlflow_model_name="mr-aliases")
    runs = {
        v: tracking.log_bundle(s, _bundle(s, v, rmse)) for v, rmse in (("v1", 0.95), ("v2", 0.93))
    }
    assert all(runs.values())
    client = _client(tracking_uri)
    run = client.get_run(runs["v2"])
    assert run.data.tags["movierec.training_data_id"] == "data-v2"
    assert run.data.tags["movierec.git_commit"] not in ("", "None")
    assert run.data.params["xgb.eta"] == "0.05"
    assert run.data.metrics["rmse"] == pytest.approx(0.93)
    assert "ndcg_at_10" in run.data.metrics
    history = client.get_metric_history(runs["v2"], "tuning_trial_rmse")
    assert [m.step for m in history] == [0, 1]
    assert {a.path for a in client.list_artifacts(runs["v2"], "bundle")} >= {
        "bundle/weights.bin",
        "bundle/metadata.json",
    }

    def alias(name: str) -> str | None:
        try:
            mv = client.get_model_version_by_alias("mr-aliases", name)
        except Exception:  # no such alias
            return None
        return str(mv.tags["movierec_version"])

    set_stable(s, "v1", "first")
    assert (alias("champion"), alias("challenger")) == ("v1", None)
    set_canary(s, "v2", 10, "canary")
    assert (alias("champion"), alias("challenger")) == ("v1", "v2")
    promote_canary(s, "healthy")
    assert (alias("champion"), alias("challenger")) == ("v2", None)


def test_mlflow_down_never_stops_routing_and_is_counted(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    s = make_settings(tmp_path, mlflow_tracking_uri=down)
    before = tracking.tracking_failures
    start = time.monotonic()
    assert tracking.log_bundle(s, _bundle(s, "v1", 0.9)) is None
    set_stable(s, "v1", "first model while MLflow is down")
    assert time.monotonic() - start < 30
    assert read_routing(s).stable == "v1"  # type: ignore[union-attr]
    assert tracking.tracking_failures == before + 2
