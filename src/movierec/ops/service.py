"""The service as a child process: start gunicorn on a free loopback port, wait until it is
ready, stop it. The one place that polls `/readyz` (the demo, deployment, the tests and the
serving benchmark all use it)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import requests

from movierec.core.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def poll_ready(
    url: str,
    accept: Callable[[Mapping[str, object]], bool] = lambda _body: True,
    *,
    timeout: float = 60.0,
    streak: int = 1,
    proc: subprocess.Popen[bytes] | None = None,
) -> tuple[bool, dict[str, object], bool]:
    """Poll `url`/readyz until `streak` answers in a row are 200 and accepted (several workers
    answer in turn). Returns (ready, the last body, whether the service answered at all)."""
    deadline = time.monotonic() + timeout
    body: dict[str, object] = {}
    reached, run = False, 0
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the service exited with {proc.returncode}")
        try:
            resp = requests.get(f"{url}/readyz", timeout=3)
            answer, reached = resp.json(), True
            body = answer if isinstance(answer, dict) else {}
            run = run + 1 if resp.status_code == 200 and accept(body) else 0
        except (requests.RequestException, ValueError):
            run = 0
        if run >= streak:
            return True, body, reached
        time.sleep(0.1)
    return False, body, reached


def wait_for_version(url: str, version: str, timeout: float = 30.0) -> None:
    """Until the service has loaded `version` (as stable, canary or shadow)."""
    ok, body, _ = poll_ready(
        url,
        lambda b: version in (b.get("stable"), b.get("canary"), b.get("shadow")),
        timeout=timeout,
    )
    if not ok:
        raise RuntimeError(f"the service did not load {version} within {timeout} s: {body}")


def start_service(
    settings: Settings,
    port: int,
    *,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    timeout: float = 60.0,
) -> subprocess.Popen[bytes]:
    """`movierec serve` with these settings in its own process group; returns once ready."""
    full = dict(os.environ) | settings.env() | {"MOVIEREC_PORT": str(port)} | dict(env or {})
    log_path = log_path or settings.logs_path / "gunicorn.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "movierec.cli", "serve"],
            env=full,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        ok, _, _ = poll_ready(f"http://127.0.0.1:{port}", timeout=timeout, proc=proc)
    except RuntimeError:
        raise RuntimeError(f"the service exited; see {log_path}") from None
    if not ok:
        stop_service(proc)
        raise RuntimeError(f"the service did not become ready within {timeout} s; see {log_path}")
    return proc


def stop_service(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM to the process group (gunicorn drains its workers), SIGKILL if it hangs."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def running_service(
    settings: Settings, *, env: Mapping[str, str] | None = None, log_path: Path | None = None
) -> Iterator[str]:
    """A ready service for the block; yields its base URL and stops it afterwards."""
    port = free_port()
    proc = start_service(settings, port, env=env, log_path=log_path)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_service(proc)
