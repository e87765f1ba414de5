"""Helpers shared by service tests: tiny bundles, a real gunicorn on a free loopback port."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import requests

from movierec.core.schema import COLD_START, RECOMMENDATIONS
from movierec.core.settings import Settings
from movierec.model.recommender import Recommender
from movierec.ops.service import free_port, poll_ready, start_service, stop_service
from movierec.registry.bundles import save_bundle
from movierec.retrain.training import write_bundle_files

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
    cold = json.dumps({"items": [f"{tag}+popular+{j}" for j in range(20)]}).encode()
    # written in a folder of its own: the cache is shared by pytest-xdist workers (and by other
    # checkouts), where two tests making a "v1" would write one file at the same time
    with tempfile.TemporaryDirectory() as tmp:
        lists = Path(tmp) / RECOMMENDATIONS
        recs.to_parquet(lists, index=False)
        files: dict[str, bytes | Path] = {RECOMMENDATIONS: lists, COLD_START: cold}
        return save_bundle(settings, version, files, {"metrics": {}})


def make_model_bundle(
    settings: Settings,
    version: str,
    model: Recommender,
    users: np.ndarray,
    cutoff: str = "2025-01-01T12:00:00+00:00",
) -> Path:
    """A bundle of a fitted model as the trainer registers it (lists, neighbours, model
    files), trained on events up to `cutoff`: the service folds in what came after."""
    with tempfile.TemporaryDirectory() as tmp:
        names, _ = write_bundle_files(Path(tmp), model, users, 20)
        files: dict[str, bytes | Path] = {n: Path(tmp) / n for n in names}
        return save_bundle(settings, version, files, {"metrics": {}, "training_cutoff": cutoff})


@contextlib.contextmanager
def gunicorn(settings: Settings, workers: int = 2, **env_extra: str) -> Iterator[str]:
    """`movierec serve` as a real process group; yields the base URL once /readyz is 200."""
    with gunicorn_process(settings, workers, **env_extra) as (url, _proc):
        yield url


@contextlib.contextmanager
def gunicorn_process(
    settings: Settings, workers: int = 2, **env_extra: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """As `gunicorn`, also yielding the master process (its children are the workers)."""
    env = {
        "MOVIEREC_WORKERS": str(workers),
        "MOVIEREC_ROUTING_CHECK_SECONDS": "0.2",
        "PROMETHEUS_MULTIPROC_DIR": str(settings.home / "prom"),
        **env_extra,
    }
    port = free_port()
    proc = start_service(settings, port, env=env, log_path=settings.home / "gunicorn.log")
    try:
        url = f"http://127.0.0.1:{port}"
        # every worker has loaded its models (a new connection reaches a worker at random),
        # so a fault a test injects next does not meet a worker still booting
        ready_streak(url, lambda b: bool(b["ready"]), streak=6 * workers)
        yield url, proc
    finally:
        stop_service(proc)


def wait_listening(proc: subprocess.Popen[bytes], port: int, what: str) -> None:
    """Until a server the test started accepts connections on loopback `port` (30 s at most)."""
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not listen within 30 s")
        time.sleep(0.05)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM a server the test started (by its PID), SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def worker_pids(master: int) -> list[int]:
    """The gunicorn master's children (its workers)."""
    try:
        text = Path(f"/proc/{master}/task/{master}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def ready_streak(
    url: str, accept: Callable[[dict[str, Any]], bool], streak: int = 6
) -> dict[str, Any]:
    """Until `streak` /readyz answers in a row (every worker, in turn) are accepted; returns
    the last (accepted) body."""
    ok, body, _ = poll_ready(url, accept, timeout=30, streak=streak)
    if not ok:
        raise AssertionError(f"/readyz never settled: {body}")
    return body


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


@dataclass
class Outcome:
    """One request of a load loop: when it started, its status (-1: no answer), its request id
    (or the error), how long it took."""

    started: float
    status: int
    detail: str
    seconds: float


class Load:
    """`clients` threads, each with its own keep-alive session, ask `/recommend/<id>` in a
    loop until stopped or `max_requests` in all (a bounded loop on loopback)."""

    def __init__(self, url: str, clients: int = 4, max_requests: int = 20_000, users: int = 300):
        self.url, self.users, self.max_requests = url, users, max_requests
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(clients)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for t in self._threads:
            t.join()
        return self.outcomes

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        """Until `count` more requests were answered."""
        target = len(self.outcomes) + count
        wait_until(lambda: len(self.outcomes) >= target, timeout=timeout)

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        session = requests.Session()
        while not self._stop.is_set() and len(self.outcomes) < self.max_requests:
            t0 = time.monotonic()
            try:
                r = session.get(f"{self.url}/recommend/{rng.randrange(self.users)}", timeout=10)
                out = Outcome(t0, r.status_code, r.headers.get("X-Request-ID", ""), 0.0)
            except requests.RequestException as exc:
                out = Outcome(t0, -1, type(exc).__name__, 0.0)
            out.seconds = time.monotonic() - t0
            self.outcomes.append(out)


def failed(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.status != 200]
