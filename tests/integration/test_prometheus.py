"""A real Prometheus scrapes the service; its HTTP API returns the request counter."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import requests

from movierec.core.settings import Settings
from movierec.registry.routing import set_stable
from tests.servicekit import free_port, gunicorn, make_bundle


@pytest.mark.slow
def test_prometheus_scrapes_the_request_counter(settings: Settings) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Debian's prometheus is not installed (scripts/system_deps.sh installs it)")
    make_bundle(settings, "v1", "one")
    set_stable(settings, "v1", "start")
    with gunicorn(settings) as url:
        for u in range(25):
            assert requests.get(f"{url}/recommend/{u}", timeout=5).status_code == 200
        port = free_port()
        target = url.removeprefix("http://")
        config = settings.home / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n"
            "scrape_configs:\n  - job_name: movierec\n    static_configs:\n"
            f"      - targets: ['{target}']\n"
        )
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={settings.home / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            value = None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    r = requests.get(
                        f"http://127.0.0.1:{port}/api/v1/query",
                        params={"query": 'sum(movierec_requests_total{status="200"})'},
                        timeout=2,
                    )
                    result = r.json()["data"]["result"]
                    if result:
                        value = float(result[0]["value"][1])
                        break
                except (requests.RequestException, KeyError, ValueError):
                    pass
                time.sleep(0.5)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    assert value is not None and value >= 25
