"""A real Redis server for a test: Debian's `redis-server`, no persistence, on a free loopback
port; stopped by PID after the test (or by the test itself, to show Redis down)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from movierec.ops.service import free_port
from tests.servicekit import stop_process, wait_listening


@dataclass
class RedisServer:
    url: str
    port: int
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        stop_process(self.process)


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """Yields a running server; skips the test when redis-server is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("Debian's redis-server is not installed (scripts/system_deps.sh installs it)")
    folder = Path(tempfile.mkdtemp(prefix="movierec-redis-"))
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        [*args, "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    server = RedisServer(f"redis://127.0.0.1:{port}/0", port, proc)
    try:
        wait_listening(proc, port, "redis-server")
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
