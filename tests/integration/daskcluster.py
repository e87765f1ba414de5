"""A real Dask cluster for a test: `dask scheduler` and worker processes (`dask worker`, no
nanny, so a killed worker stays dead) on free loopback ports; stopped by PID at the end."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from movierec.ops.service import free_port
from tests.servicekit import stop_process, wait_listening

REPO = Path(__file__).resolve().parents[2]
START_SECONDS = 120  # a loaded 2-core machine takes a while to import the worker side


@dataclass
class DaskCluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def stop(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            stop_process(proc)


def _dask_command() -> list[str]:
    script = Path(sys.executable).with_name("dask")
    if not script.exists() and shutil.which("dask") is None:
        pytest.skip("the `dask` command is not installed (pdm install brings distributed)")
    return [str(script) if script.exists() else "dask"]


@contextlib.contextmanager
def dask_cluster(workers: int = 2) -> Iterator[DaskCluster]:
    """Yields a scheduler with `workers` single-threaded workers connected to it."""
    from distributed import Client

    dask = _dask_command()
    env = os.environ | {"PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    port = free_port()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    scheduler = subprocess.Popen(
        [*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        **quiet,  # type: ignore[call-overload]
    )
    cluster = DaskCluster(f"tcp://127.0.0.1:{port}", scheduler)
    try:
        wait_listening(scheduler, port, "dask scheduler")
        for n in range(workers):
            args = ["--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", f"w{n}"]
            args += ["--memory-limit", "2GiB", "--host", "127.0.0.1"]
            cluster.workers.append(
                subprocess.Popen([*dask, "worker", cluster.address, *args], **quiet)  # type: ignore[call-overload]
            )
        with Client(cluster.address, timeout="30s") as client:
            client.wait_for_workers(workers, timeout=START_SECONDS)
        yield cluster
    finally:
        cluster.stop()
