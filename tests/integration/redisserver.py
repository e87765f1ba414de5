"""A real Redis server for a test: Debian's `redis-server`, no persistence, on a free loopback
port; stopped by PID after the test (or by the test itself, to show Redis down)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from movierec.ops.service import free_port
from tests.servicekit import stop_process


@dataclass
class RedisServer:
    url: str
    port: int
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        stop_process(self.process)


def _wait_listening(server: RedisServer) -> None:
    deadline = time.monotonic() + 20
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {server.process.returncode}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", server.port), 0.2),
        ):
            return
        if time.monotonic() > deadline:
            raise RuntimeError("redis-server did not listen within 20 s")
        time.sleep(0.05)


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
        _wait_listening(server)
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
