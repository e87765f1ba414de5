"""The retrainer: the gate, the lock, a kill at every step, and the end-to-end life cycle on
real data with a running gunicorn service."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests

from movierec.core.files import exclusive_lock
from movierec.core.settings import Settings
from movierec.data.ingest import ingest
from movierec.data.replay import replay
from movierec.registry.bundles import bundle_path, list_versions
from movierec.registry.routing import arm_for, read_routing, set_stable
from movierec.retrain.gate import lake_counts, write_state
from movierec.retrain.job import ExitCode, retrain
from movierec.retrain.training import train_candidate
from tests.conftest import make_settings
from tests.servicekit import gunicorn, wait_until

# without a shadow stage, a promoted candidate is routed straight to a canary (what these
# tests check; the shadow stage is tested in tests/unit/retrain and tests/unit/release)
FAST = {"tune_iterations": 1, "tune_seconds": 5.0, "n_threads": 2, "shadow_sample_pct": 0}
FIRST, MORE = 0.25, 0.4  # the first model's share of ml-100k's ratings, then the retrain's
Fresh = Callable[[], tuple[Settings, str]]  # a pristine home with its first model's version


@pytest.fixture(scope="module")
def first_model_home(tmp_path_factory: pytest.TempPathFactory, ml100k_dir: Path) -> Iterator[Fresh]:
    """One trained first model for the module: a home with the first quarter of ml-100k
    ingested and its tuned model stable, made once; each call gives a test a pristine copy of
    it at the same path (the lake keys the event log's read position by its path)."""
    base = tmp_path_factory.mktemp("retrain")
    s = make_settings(base / "home").replace(**FAST)
    shutil.copytree(ml100k_dir, s.datasets_path / "ml-100k")
    replay(s, "ml-100k", s.data.event_source, end=FIRST)
    ingest(s)
    v1 = train_candidate(s, tune=True)
    set_stable(s, v1.version, "first")
    write_state(s, v1.version, "initial", lake_counts(s))
    pristine = base / "pristine"
    shutil.copytree(s.home, pristine)

    def fresh() -> tuple[Settings, str]:
        shutil.rmtree(s.home)
        shutil.copytree(pristine, s.home)
        return s, v1.version

    yield fresh


def _snapshot(s: Settings) -> dict[str, bytes | None]:
    files = [
        s.routing_file,
        s.retrain_state_file,
        s.models_path / "model_provenance.csv",
        s.routing_history_file,
    ]
    return {str(f): f.read_bytes() if f.exists() else None for f in files}


@pytest.mark.slow
def test_too_little_new_data_is_nothing_to_do(first_model_home: Fresh) -> None:
    s, _ = first_model_home()
    replay(s, "ml-100k", s.data.event_source, start=FIRST, end=FIRST + 0.001)  # ~100 ratings
    before = list_versions(s)
    result = retrain(s)
    assert result.code == ExitCode.NOTHING_TO_DO
    assert "gate not met" in result.reason
    assert list_versions(s) == before
    steps = [json.loads(x)["step"] for x in (s.logs_path / "retrain.log").read_text().splitlines()]
    assert steps == ["refresh", "gate", "decision"]


def test_a_second_run_is_busy_while_the_lock_is_held(settings: Settings) -> None:
    with exclusive_lock(settings.data_path / "retrain.lock"):
        env = dict(os.environ, MOVIEREC_HOME=str(settings.home))
        proc = subprocess.run(
            [sys.executable, "-m", "movierec.cli", "retrain"],
            env=env,
            capture_output=True,
            timeout=60,
        )
    assert proc.returncode == ExitCode.BUSY


def _run_retrain(s: Settings, crash_at: str = "") -> int:
    # the child gets exactly these settings (FAST included: no shadow stage)
    env = dict(os.environ, **s.env(), MOVIEREC_FAULT=f"retrain.{crash_at}" if crash_at else "")
    proc = subprocess.run(
        [sys.executable, "-m", "movierec.cli", "retrain"], env=env, capture_output=True, timeout=900
    )
    return proc.returncode


@pytest.mark.slow
@pytest.mark.timeout(1500)  # seven retrain processes, each tuning and training: slow when shared
def test_a_kill_at_any_step_changes_nothing_and_a_rerun_works(
    first_model_home: Fresh,
) -> None:
    s, _ = first_model_home()
    replay(s, "ml-100k", s.data.event_source, start=FIRST, end=MORE)
    for step in ("refresh", "gate", "train", "compare", "promote"):
        before = _snapshot(s)
        assert _run_retrain(s, crash_at=step) == -9, step
        assert _snapshot(s) == before, f"killed before {step}: routing/state/provenance changed"
        assert not list(s.models_path.glob(".tmp-*")) or step in ("compare", "promote")
    # killed after the routing change (its commit point) but before the state write
    assert _run_retrain(s, crash_at="state") == -9
    routing = read_routing(s)
    assert routing is not None and routing.canary is not None
    candidate = routing.canary
    # the rerun finishes the interrupted promotion instead of training again
    assert _run_retrain(s) == ExitCode.NOTHING_TO_DO
    state = json.loads(s.retrain_state_file.read_text())
    assert state["version"] == candidate and state["decision"] == "promoted"
    provenance = pd.read_csv(s.models_path / "model_provenance.csv")
    assert candidate in set(provenance["version"])
    assert all((bundle_path(s, v) / "metadata.json").exists() for v in list_versions(s))


@pytest.mark.slow
def test_end_to_end_retrain_promotes_a_canary_served_without_restart(
    first_model_home: Fresh,
) -> None:
    s, v1 = first_model_home()
    with gunicorn(s) as url:
        assert requests.get(f"{url}/recommend/1", timeout=5).headers["X-Model-Version"] == v1
        replay(s, "ml-100k", s.data.event_source, start=FIRST, end=MORE)
        result = retrain(s)
        assert result.code == ExitCode.PROMOTED, result.reason
        v2 = result.candidate
        assert v2 is not None and result.candidate_metrics["rmse"] < result.stable_metrics["rmse"]
        routing = read_routing(s)
        assert routing is not None and (routing.stable, routing.canary, routing.canary_pct) == (
            v1,
            v2,
            10,
        )
        # every worker notices the change within a check interval plus the load time
        wait_until(
            lambda: all(
                requests.get(f"{url}/readyz", timeout=5).json()["canary"] == v2 for _ in range(20)
            )
        )
        lists = pd.read_parquet(bundle_path(s, v2) / "recommendations.parquet").set_index("user_id")
        canary_users = [
            u for u in range(1, 944) if arm_for(u, routing, s.serving.release_salt) == "canary"
        ]
        assert 50 < len(canary_users) < 150
        for u in canary_users[:30]:
            r = requests.get(f"{url}/recommend/{u}", timeout=5)
            assert r.headers["X-Model-Version"] == v2
            assert r.text == lists.loc[u, "items"]
        stable_user = next(u for u in range(1, 944) if u not in set(canary_users))
        assert (
            requests.get(f"{url}/recommend/{stable_user}", timeout=5).headers["X-Model-Version"]
            == v1
        )
