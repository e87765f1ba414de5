"""Faults injected into a real gunicorn on loopback while clients keep asking (a bounded
loop): a worker killed, the log folder full, routing.json broken, a served bundle deleted.
Each test prints one `FAULT ...` line with its figures (docs/operations.md's fault table)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from movierec.core.settings import Settings
from movierec.ops.deploy import DeployCode, deploy
from movierec.registry.routing import set_stable
from tests.servicekit import (
    Load,
    failed,
    gunicorn,
    gunicorn_process,
    make_bundle,
    ready_streak,
    wait_until,
    worker_pids,
)

CLIENTS = 4


def _report(name: str, load: str, **figures: object) -> None:
    print(f"FAULT {name} | {load} | " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def _metric(url: str, name: str) -> float:
    """A counter's total over its series (0 when it has none yet)."""
    text = requests.get(f"{url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


@pytest.fixture
def v1(settings: Settings) -> Settings:
    make_bundle(settings, "v1", "one")
    make_bundle(settings, "v2", "two")
    set_stable(settings, "v1", "start")
    return settings


@pytest.mark.slow
def test_a_killed_worker_fails_at_most_the_requests_in_flight(v1: Settings) -> None:
    with gunicorn_process(v1) as (url, master), Load(url, clients=CLIENTS) as load:
        load.wait_for(300)
        victim = worker_pids(master.pid)[0]
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(set(worker_pids(master.pid)) - {victim}) == 2)
        ready_streak(url, lambda b: b["stable"] == "v1")
        back_at = time.monotonic()
        load.wait_for(1000)
        outcomes = load.stop()
    bad = failed(outcomes)
    after = [o for o in outcomes if o.started > killed_at]
    _report(
        "worker SIGKILL", f"{CLIENTS} keep-alive clients", requests=len(outcomes),
        failed=len(bad), failed_after_replacement=len([o for o in bad if o.started > back_at]),
        respawn_s=round(back_at - killed_at, 2),
    )  # fmt: skip
    # each client has one request in flight at a time: at most that many can be cut off
    assert len(bad) <= CLIENTS, bad
    assert all(o.started < killed_at + 1.0 for o in bad), bad
    assert len(after) > 1000 and not [o for o in bad if o.started > back_at]


@contextlib.contextmanager
def _small_tmpfs(where: Path, size: str = "2m") -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the full-disk test needs root")
    out = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True, text=True,
    )  # fmt: skip
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(folder: Path) -> Path:
    """A file that takes every free byte of `folder`'s file system."""
    filler = folder / "filler"
    with open(filler, "wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    return filler


def _logged_ids(folder: Path) -> list[str]:
    return [
        json.loads(line)["request_id"]
        for f in folder.glob("served-*.jsonl")
        for line in f.read_text().splitlines()
    ]


@pytest.mark.slow
def test_a_full_log_disk_degrades_and_loses_nothing(v1: Settings, tmp_path: Path) -> None:
    with _small_tmpfs(tmp_path / "logs") as logs:
        s = v1.replace(logs_dir=logs)
        with gunicorn(s) as url:
            filler = _fill(logs)
            with Load(url, clients=2) as load:
                # the answer of a worker that has met the full disk (the other may not have yet)
                degraded = ready_streak(url, lambda b: bool(b["degraded"]), streak=2)["degraded"]
                load.wait_for(500)
                filler.unlink()  # room again: the spill files are read back
                load.wait_for(200)
                ready_streak(url, lambda b: not b["degraded"])
                outcomes = load.stop()
            spilled = _metric(url, "movierec_served_log_spilled_total")
            dropped = _metric(url, "movierec_served_log_dropped_total")
        # after the service stopped (every worker flushed at exit)
        ids = [o.detail for o in outcomes if o.status == 200]
        logged = _logged_ids(logs)
    _report(
        "logs/ on a full file system", "2 keep-alive clients", requests=len(outcomes),
        failed=len(failed(outcomes)), spilled=int(spilled), dropped=int(dropped),
        lost=len(set(ids) - set(logged)), doubled=len(logged) - len(set(logged)),
    )  # fmt: skip
    assert any("No space left" in d for d in degraded), degraded
    assert failed(outcomes) == []
    assert spilled > 0 and dropped == 0
    assert set(ids) <= set(logged), "records lost"
    assert len(logged) == len(set(logged)), "records doubled"
    assert list(s.spill_path.glob("served-*.jsonl")) == []


def _movierec(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ) | settings.env()
    return subprocess.run(
        [sys.executable, "-m", "movierec.cli", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.slow
def test_a_broken_routing_file_is_refused_and_the_old_routing_serves(v1: Settings) -> None:
    good = v1.routing_file.read_text()
    with gunicorn(v1) as url, Load(url, clients=CLIENTS) as load:
        load.wait_for(200)
        v1.routing_file.write_text(good[: len(good) // 2])  # cut short
        ready_streak(url, lambda b: "routing.json" in b["refused"])
        load.wait_for(300)
        cli = _movierec(v1, "release", "set-canary", "v2", "--pct", "10")
        after_cli = v1.routing_file.read_text()
        v1.routing_file.write_text(json.dumps({"stable": "v2", "canary_pct": 140}))  # invalid
        wait_until(lambda: _metric(url, "movierec_routing_refused_total") >= 2)
        load.wait_for(300)
        refused = _metric(url, "movierec_routing_refused_total")
        v1.routing_file.write_text(good.replace('"v1"', '"v2"'))  # fixed by hand
        ready_streak(url, lambda b: b["stable"] == "v2" and "routing.json" not in b["refused"])
        outcomes = load.stop()
    versions = [o for o in outcomes if o.status == 200]
    _report(
        "routing.json cut short, then invalid", f"{CLIENTS} keep-alive clients",
        requests=len(outcomes), failed=len(failed(outcomes)), refusals_counted=int(refused),
    )  # fmt: skip
    assert failed(outcomes) == [] and len(versions) > 800
    assert refused >= 2
    # the CLI refuses to write over a file it cannot read: one line naming it, exit 1
    assert cli.returncode == 1
    assert cli.stderr.count("\n") == 1 and str(v1.routing_file) in cli.stderr
    assert after_cli == good[: len(good) // 2], "the CLI wrote over the broken file"


@pytest.mark.slow
def test_a_deleted_bundle_keeps_serving_from_memory(v1: Settings) -> None:
    with gunicorn(v1) as url, Load(url, clients=CLIENTS) as load:
        load.wait_for(200)
        # every worker has v1 in memory before it goes (a worker still booting could not load it)
        ready_streak(url, lambda b: b["stable"] == "v1")
        shutil.rmtree(v1.models_path / "v1")
        ready_streak(url, lambda b: any("v1" in d for d in b["degraded"]))
        load.wait_for(500)
        refused = deploy(v1, url, timeout=5)
        missing = _metric(url, "movierec_model_bundle_missing")
        outcomes = load.stop()
    served = {o.status for o in outcomes}
    _report(
        "a served model's bundle deleted", f"{CLIENTS} keep-alive clients",
        requests=len(outcomes), failed=len(failed(outcomes)), deploy_exit=int(refused.code),
    )  # fmt: skip
    assert served == {200}
    assert missing >= 1
    assert refused.code == DeployCode.ERROR and str(v1.models_path / "v1") in refused.message
