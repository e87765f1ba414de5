"""No way around the rate limit: a limit shared by every gunicorn worker through a real Redis,
and the compose stack's nginx (docker/nginx.conf, run for real on loopback) limiting per
client address, with made-up X-Forwarded-For headers that change nothing."""

from __future__ import annotations

import contextlib
import http.client
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from movierec.core.settings import Settings
from movierec.ops.service import free_port
from movierec.registry.routing import set_stable
from tests.servicekit import gunicorn, make_bundle, wait_until

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def v1(settings: Settings) -> Settings:
    make_bundle(settings, "v1", "one")
    set_stable(settings, "v1", "start")
    return settings


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


@contextlib.contextmanager
def _redis(folder: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (scripts/system_deps.sh installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: _listening(port))
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _codes(url: str, n: int, headers: dict[str, str] | None = None) -> list[int]:
    """`n` requests, each on a new connection (so the workers share them)."""
    return [
        requests.get(f"{url}/recommend/1", headers=headers or {}, timeout=10).status_code
        for _ in range(n)
    ]


@pytest.mark.slow
def test_workers_share_one_limit_through_redis(v1: Settings, tmp_path: Path) -> None:
    with _redis(tmp_path) as (redis_url, redis_proc):
        env = {"MOVIEREC_RATE_LIMIT_PER_MINUTE": "5", "MOVIEREC_RATE_LIMIT_STORAGE": redis_url}
        with gunicorn(v1, workers=2, **env) as url:
            codes = _codes(url, 20)
            spoofed = _codes(url, 5, {"X-Forwarded-For": "198.51.100.1"})
            redis_proc.terminate()  # Redis gone: requests pass, and that is counted
            redis_proc.wait(timeout=10)
            without = _codes(url, 5)
            metrics = requests.get(f"{url}/metrics", timeout=5).text
    print(f"FAULT shared limit 5/min, 2 workers, Redis | 20 requests | 200s={codes.count(200)}")
    assert codes.count(200) == 5 and codes.count(429) == 15
    assert spoofed == [429] * 5
    assert without == [200] * 5
    errors = re.search(r"^movierec_rate_limit_errors_total (\S+)", metrics, re.M)
    assert errors is not None and float(errors.group(1)) >= 5


@pytest.mark.slow
def test_without_redis_the_limit_is_per_worker(v1: Settings) -> None:
    with gunicorn(v1, workers=2, MOVIEREC_RATE_LIMIT_PER_MINUTE="5") as url:
        codes = _codes(url, 40)
    print(f"FAULT limit 5/min per worker, 2 workers | 40 requests | 200s={codes.count(200)}")
    assert 5 <= codes.count(200) <= 10  # what --help and docs/serving.md say: per worker


def _nginx_conf(folder: Path, app_port: int, port: int) -> Path:
    """docker/nginx.conf with the replicas replaced by one gunicorn on loopback."""
    text = (REPO / "docker" / "nginx.conf").read_text()
    text = re.sub(
        r"server app1:8080[^;]*;\s*server app2:8080[^;]*;", f"server 127.0.0.1:{app_port};", text
    )
    text = text.replace("listen 80;", f"listen 127.0.0.1:{port};")
    conf = folder / "nginx.conf"
    conf.write_text(text)
    return conf


@contextlib.contextmanager
def _nginx(folder: Path, app_url: str) -> Iterator[int]:
    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if binary is None:
        pytest.skip("nginx is not installed (scripts/system_deps.sh installs it)")
    port = free_port()
    conf = _nginx_conf(folder, int(app_url.rsplit(":", 1)[1]), port)
    for sub in ("logs", "tmp"):
        (folder / sub).mkdir(exist_ok=True)
    directives = f"daemon off; pid {folder}/nginx.pid;"
    proc = subprocess.Popen(
        [binary, "-p", str(folder), "-c", str(conf), "-g", directives],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: _listening(port) or proc.poll() is not None)
        if proc.poll() is not None:
            pytest.skip(f"nginx could not start with {conf}")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _get(port: int, source: str, forwarded: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", "/recommend/1", headers={"X-Forwarded-For": forwarded})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


@pytest.mark.slow
def test_nginx_limits_each_client_address_and_the_app_sees_the_real_one(
    v1: Settings, tmp_path: Path
) -> None:
    env = {"MOVIEREC_RATE_LIMIT_PER_MINUTE": "3", "MOVIEREC_TRUSTED_PROXIES": "127.0.0.1"}
    with gunicorn(v1, workers=1, **env) as app_url, _nginx(tmp_path, app_url) as port:
        # through nginx, made-up headers (what $proxy_add_x_forwarded_for passes on) do not
        # give a client new limits in the app: it counts 127.0.0.2, the address nginx saw
        app = [_get(port, "127.0.0.2", f"198.51.100.{i}") for i in range(6)]
        other = _get(port, "127.0.0.3", "198.51.100.1")
        # nginx's own limit (100/s, bursts of 200): a flood from one address is cut
        flood = [_get(port, "127.0.0.4", f"203.0.113.{i % 250}") for i in range(600)]
    statuses = [code for code, _ in app]
    by_nginx = [body for code, body in flood if code == 429 and "from 127.0.0.4" in body]
    print(f"FAULT nginx limit_req | 600 requests from one address | nginx 429s={len(by_nginx)}")
    assert statuses == [200, 200, 200, 429, 429, 429]
    assert other[0] == 200
    assert by_nginx and all("\n" not in body for body in by_nginx)
    assert {code for code, _ in flood} <= {200, 429}
