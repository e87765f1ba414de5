"""Real gunicorn on loopback under continuous load while routing changes and a corrupt model
is installed: not one request fails or takes longer than 600 ms."""

from __future__ import annotations

import random
import threading
import time

import pytest
import requests

from movierec.core.settings import Settings
from movierec.registry.routing import promote_canary, set_canary, set_canary_pct, set_stable
from tests.servicekit import gunicorn, make_bundle, wait_until


@pytest.mark.slow
def test_no_request_fails_while_routing_changes(settings: Settings) -> None:
    for version, tag in (("v1", "one"), ("v2", "two"), ("v3", "three")):
        make_bundle(settings, version, tag)
    bad = settings.models_path / "v3" / "recommendations.parquet"
    bad.write_bytes(b"corrupt" + bad.read_bytes()[7:])
    set_stable(settings, "v1", "start")
    results: list[tuple[int, float, str]] = []
    stop = threading.Event()

    with gunicorn(settings) as url:

        def hammer(seed: int) -> None:
            rng = random.Random(seed)
            s = requests.Session()
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    r = s.get(f"{url}/recommend/{rng.randrange(300)}", timeout=5)
                    results.append(
                        (
                            r.status_code,
                            time.perf_counter() - t0,
                            r.headers.get("X-Model-Version", ""),
                        )
                    )
                except requests.RequestException as exc:
                    results.append((-1, time.perf_counter() - t0, repr(exc)))

        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()

        def ready() -> dict:
            return requests.get(f"{url}/readyz", timeout=5).json()

        try:
            set_canary(settings, "v2", 0, "canary at 0")
            wait_until(lambda: ready()["canary"] == "v2")
            for pct in (50, 100):
                set_canary_pct(settings, pct, f"ramp {pct}")
                wait_until(lambda pct=pct: ready()["canary_pct"] == pct)
                time.sleep(0.5)
            promote_canary(settings, "stable replaced")
            wait_until(lambda: ready()["stable"] == "v2" and ready()["canary"] is None)
            time.sleep(0.5)
            set_canary(settings, "v3", 50, "a corrupt model")
            wait_until(lambda: "v3" in ready()["refused"])
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join()

    assert len(results) > 200
    failures = [r for r in results if r[0] != 200]
    assert failures == []
    assert max(r[1] for r in results) < 0.6
    versions = {r[2] for r in results}
    assert {"v1", "v2"} <= versions and "v3" not in versions
