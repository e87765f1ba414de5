"""Training on a real Dask cluster (`dask scheduler` and two `dask worker` processes on
loopback): the same holdout metrics as in-process training, within a stated tolerance; and a
worker killed mid-training either recovers (its tasks re-run on the other worker) or fails
the job with a `TrainingError`, never with a half-written bundle or a routing change."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest

from movierec.core.errors import TrainingError
from movierec.core.settings import Settings
from movierec.data.ingest import ingest
from movierec.data.replay import replay
from movierec.model.training import cluster
from movierec.registry.bundles import list_versions, load_metadata, verify_bundle
from movierec.registry.routing import read_routing
from movierec.retrain.training import train_candidate
from tests.integration.daskcluster import DaskCluster, dask_cluster

pytestmark = pytest.mark.slow

# On the cluster every booster trains with xgboost.dask (its rows split over two workers, so
# its histograms' quantiles differ from one process's): the out-of-fold features are the
# same, the boosters close. Measured on this 3% of ml-100k: RMSE 0.9740 in-process, 0.9745 on
# the cluster; NDCG@10 0.108 and 0.122 (the ranker has few positives to learn from here).
RMSE_TOLERANCE = 0.02
NDCG_TOLERANCE = 0.03


def _small_lake(settings: Settings) -> Settings:
    """3% of ml-100k's stream, ingested; training stays in-process unless told otherwise."""
    s = settings.replace(n_threads=1, dask_from_rows=10**9)
    replay(s, "ml-100k", s.data.event_source, end=0.03)
    ingest(s)
    return s


def test_a_model_trained_on_the_cluster_has_the_in_process_metrics(
    ml100k_settings: Settings,
) -> None:
    s = _small_lake(ml100k_settings)
    local = train_candidate(s, tune=False)
    with dask_cluster(workers=2) as cluster_:
        on_dask = s.replace(dask_scheduler=cluster_.address, dask_xgb_from_rows=0)
        remote = train_candidate(on_dask, tune=False)
    verify_bundle(remote.path)
    assert load_metadata(s, remote.version)["fit_info"]["engine"] == "remote"
    assert load_metadata(s, local.version)["fit_info"]["engine"] == "process"
    diffs = {m: abs(remote.metrics[m] - local.metrics[m]) for m in ("rmse", "ndcg@10")}
    assert diffs["rmse"] <= RMSE_TOLERANCE, diffs
    assert diffs["ndcg@10"] <= NDCG_TOLERANCE, diffs
    assert load_metadata(s, remote.version)["serving"] == load_metadata(s, local.version)["serving"]


def _train_in_thread(settings: Settings) -> dict[str, Any]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = train_candidate(settings, tune=False)
        except Exception as exc:  # the test looks at what the job raised
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    outcome["thread"] = thread
    return outcome


def _kill_once_tasks_run(running: DaskCluster, victims: list[int], outcome: dict[str, Any]) -> bool:
    """SIGKILLs the `victims` workers as soon as the scheduler holds the job's first data or
    task; False when the job ended first."""
    from distributed import Client

    with Client(running.address, timeout="30s") as client:
        while outcome["thread"].is_alive():
            busy = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
            if busy:
                for n in victims:
                    os.kill(running.workers[n].pid, signal.SIGKILL)
                return True
            time.sleep(0.02)
    return False


def _nothing_left_behind(s: Settings, before: list[str]) -> None:
    assert list_versions(s) == before
    leftovers = [p.name for p in s.models_path.iterdir() if p.name.startswith((".tmp-", ".work-"))]
    assert leftovers == []
    assert read_routing(s) is None


def test_a_worker_killed_mid_training_recovers_or_fails_cleanly(
    ml100k_settings: Settings,
) -> None:
    s = _small_lake(ml100k_settings)
    with dask_cluster(workers=2) as cluster_:
        outcome = _train_in_thread(s.replace(dask_scheduler=cluster_.address))
        assert _kill_once_tasks_run(cluster_, [0], outcome)
        outcome["thread"].join(timeout=1200)
    assert not outcome["thread"].is_alive()
    if "error" in outcome:  # failed: clearly, and nothing registered or routed
        assert isinstance(outcome["error"], TrainingError), repr(outcome["error"])
        assert "Dask" in str(outcome["error"])
        _nothing_left_behind(s, [])
    else:  # recovered on the other worker: a complete, verified bundle, nothing routed
        verify_bundle(outcome["result"].path)
        assert read_routing(s) is None


def test_every_worker_killed_fails_the_job_with_nothing_written(
    ml100k_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster, "NO_WORKER_SECONDS", 3.0)
    s = _small_lake(ml100k_settings)
    with dask_cluster(workers=2) as cluster_:
        outcome = _train_in_thread(s.replace(dask_scheduler=cluster_.address))
        assert _kill_once_tasks_run(cluster_, [0, 1], outcome)
        outcome["thread"].join(timeout=600)
    assert not outcome["thread"].is_alive()
    error = outcome.get("error")
    assert isinstance(error, TrainingError), repr(error)
    assert "Dask" in str(error) and "nothing was registered" in str(error)
    _nothing_left_behind(s, [])
