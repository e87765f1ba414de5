"""Helpers shared by service tests: tiny bundles, a real gunicorn on a free loopback port."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import requests

from movierec.core.schema import COLD_START, RECOMMENDATIONS
from movierec.core.settings import Settings
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def gunicorn(settings: Settings, workers: int = 2, **env_extra: str) -> Iterator[str]:
    """`movierec serve` as a real process group; yields the base URL once /readyz is 200."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "MOVIEREC_HOME": str(settings.home),
            "MOVIEREC_CACHE_DIR": str(settings.cache_path),
            "MOVIEREC_PORT": str(port),
            "MOVIEREC_WORKERS": str(workers),
            "MOVIEREC_ROUTING_CHECK_SECONDS": "0.2",
            "PROMETHEUS_MULTIPROC_DIR": str(settings.home / "prom"),
        }
    )
    env.update(env_extra)
    log = open(settings.home / "gunicorn.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "movierec.cli", "serve"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"gunicorn exited: {(settings.home / 'gunicorn.log').read_text()[-2000:]}"
                )
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not become ready")
            time.sleep(0.1)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)
