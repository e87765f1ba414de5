"""End to end: a rule fires in a real Prometheus scraping the real service, and a real
Alertmanager (Debian's prometheus-alertmanager) delivers it to a webhook this test runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from movierec.core.settings import Settings
from movierec.ops.service import free_port
from movierec.registry.routing import set_stable
from tests.conftest import REPO
from tests.integration.test_monitoring import _write_refresh_report
from tests.servicekit import gunicorn, make_bundle, wait_until

MONITORING = REPO / "monitoring"


@contextmanager
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A receiver of Alertmanager's webhook: yields its URL and the payloads it got."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def process(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _alertmanager(home: Path, hook: str) -> tuple[list[str], str]:
    config = (MONITORING / "alertmanager" / "alertmanager.yml").read_text()
    config = config.replace("http://127.0.0.1:5001/alerts", hook)
    config = config.replace("group_wait: 10s", "group_wait: 1s")
    path = home / "alertmanager.yml"
    path.write_text(config)
    port = free_port()
    args = [
        shutil.which("prometheus-alertmanager") or "prometheus-alertmanager",
        f"--config.file={path}",
        f"--storage.path={home / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    return args, f"127.0.0.1:{port}"


def _prometheus(home: Path, target: str, alertmanager: str) -> tuple[list[str], str]:
    config = home / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {MONITORING / 'prometheus' / 'alerts.yml'}\n"
        "alerting:\n  alertmanagers:\n    - static_configs:\n"
        f"        - targets: ['{alertmanager}']\n"
        "scrape_configs:\n  - job_name: movierec\n    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    port = free_port()
    args = [
        shutil.which("prometheus") or "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={home / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    return args, f"http://127.0.0.1:{port}"


@pytest.mark.slow
def test_a_firing_rule_reaches_the_webhook_through_alertmanager(settings: Settings) -> None:
    for binary in ("prometheus", "prometheus-alertmanager"):
        if shutil.which(binary) is None:
            pytest.skip(f"Debian's {binary} is not installed (scripts/system_deps.sh installs it)")
    make_bundle(settings, "v1", "one")
    set_stable(settings, "v1", "start")
    _write_refresh_report(settings.lake_path, poisoned=["heat+1995"])
    home = settings.home
    with webhook() as (hook, received), gunicorn(settings) as url:
        am_args, am_address = _alertmanager(home, hook)
        prom_args, prom_url = _prometheus(home, url.removeprefix("http://"), am_address)
        with process(am_args, home / "alertmanager.log"), process(prom_args, home / "prom.log"):

            def delivered() -> bool:
                return any(
                    a["labels"]["alertname"] == "MovierecRatingPoisoning"
                    and a["status"] == "firing"
                    for payload in received
                    for a in payload.get("alerts", [])
                )

            wait_until(delivered, timeout=90, interval=0.5)
            rules = requests.get(f"{prom_url}/api/v1/alerts", timeout=5).json()
    alert = next(
        a
        for payload in received
        for a in payload["alerts"]
        if a["labels"]["alertname"] == "MovierecRatingPoisoning"
    )
    assert alert["labels"]["severity"] == "page"
    assert alert["annotations"]["summary"].startswith("1 movie(s)")
    firing = {a["labels"]["alertname"] for a in rules["data"]["alerts"] if a["state"] == "firing"}
    assert "MovierecRatingPoisoning" in firing


def test_the_alertmanager_config_is_valid() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool is not installed (Debian's prometheus-alertmanager)")
    config = MONITORING / "alertmanager" / "alertmanager.yml"
    run = subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 receivers" in run.stdout
