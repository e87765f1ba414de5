"""Helpers shared by service tests: tiny bundles, a real gunicorn on a free loopback port."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from movierec.core.schema import COLD_START, RECOMMENDATIONS
from movierec.core.settings import Settings
from movierec.ops.service import free_port, start_service, stop_service
from movierec.registry.bundles import save_bundle

REPO = Path(__file__).resolve().parents[1]


def make_bundle(settings: Settings, version: str, tag: str, users: int = 200) -> Path:
    """A serving bundle whose lists name the version (`<tag>+movie+N`), so a test can tell
    which model answered from the body alone."""
    recs = pd.DataFrame(
        {
            "user_id": list(range(users)),
            "items": [
                ",".join(f"{tag}+movie+{(u + j) % 97}" for j in range(20)) for u in range(users)
            ],
        }
    )
    tmp = settings.cache_path / f"bundle-{version}.parquet"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    recs.to_parquet(tmp, index=False)
    cold = json.dumps({"items": [f"{tag}+popular+{j}" for j in range(20)]}).encode()
    return save_bundle(settings, version, {RECOMMENDATIONS: tmp, COLD_START: cold}, {"metrics": {}})


@contextlib.contextmanager
def gunicorn(settings: Settings, workers: int = 2, **env_extra: str) -> Iterator[str]:
    """`movierec serve` as a real process group; yields the base URL once /readyz is 200."""
    env = {
        "MOVIEREC_WORKERS": str(workers),
        "MOVIEREC_ROUTING_CHECK_SECONDS": "0.2",
        "PROMETHEUS_MULTIPROC_DIR": str(settings.home / "prom"),
        **env_extra,
    }
    port = free_port()
    proc = start_service(settings, port, env=env, log_path=settings.home / "gunicorn.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_service(proc)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM a server the test started (by its PID), SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)
