"""The shadow stage in the service: a sampled stable request hands its user to the candidate,
whose list is computed off the request path and logged beside stable's, never served."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from flask import Flask
from prometheus_client import REGISTRY

from movierec.core.settings import Settings
from movierec.registry.routing import set_shadow, set_stable
from movierec.serve import create_app
from movierec.serve.models import ServingModel
from movierec.serve.shadow import ShadowRunner, ShadowTask, shadow_sampled
from tests.servicekit import make_bundle, wait_until


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    s = settings.replace(routing_check_seconds=0.05)
    make_bundle(s, "v1", "one")
    make_bundle(s, "v2", "two")
    set_stable(s, "v1", "test")
    set_shadow(s, "v2", 100, "test")
    app = create_app(s)
    yield app
    state = app.extensions["movierec"]
    state.models.stop()
    state.served.close()
    state.shadow.close()


def _lines(settings: Settings, pattern: str) -> list[dict]:
    return [
        json.loads(x) for f in settings.logs_path.glob(pattern) for x in f.read_text().splitlines()
    ]


def test_the_candidates_list_is_logged_beside_stables_and_never_served(app: Flask) -> None:
    state = app.extensions["movierec"]
    settings = state.settings
    client = app.test_client()
    ready = client.get("/readyz").json
    assert ready["canary"] is None and ready["shadow"] == "v2"
    bodies = [client.get(f"/recommend/{u}") for u in range(5)]
    assert all(r.headers["X-Model-Version"] == "v1" for r in bodies)
    assert all(r.get_data(as_text=True).startswith("one+") for r in bodies)
    state.shadow.flush()
    state.served.flush()
    shadow = _lines(settings, "shadow-*.jsonl")
    assert sorted(r["user_id"] for r in shadow) == list(range(5))
    first = next(r for r in shadow if r["user_id"] == 3)
    assert first["model_version"] == "v2" and first["served_version"] == "v1"
    assert first["items"].startswith("two+movie+3,")
    assert first["served_items"].startswith("one+movie+3,")
    assert {r["request_id"] for r in shadow} == {r.headers["X-Request-ID"] for r in bodies}
    served = _lines(settings, "served-*.jsonl")
    assert {r["model_version"] for r in served} == {"v1"}


def test_the_answer_does_not_wait_for_the_candidate(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = app.extensions["movierec"]
    release = threading.Event()
    called = threading.Event()
    shadow_model = state.models.snapshot.shadow
    assert shadow_model is not None
    real = shadow_model.recommend

    def blocked(user_id: int) -> str:
        called.set()
        release.wait(10)
        return real(user_id)

    monkeypatch.setattr(shadow_model, "recommend", blocked)
    client = app.test_client()
    r = client.get("/recommend/7")  # answered while the candidate is still blocked
    assert r.status_code == 200 and r.headers["X-Model-Version"] == "v1"
    wait_until(called.is_set)
    assert not list(state.settings.logs_path.glob("shadow-*.jsonl"))
    release.set()
    wait_until(lambda: any(state.settings.logs_path.glob("shadow-*.jsonl")))


def test_the_sample_is_a_stable_share_of_requests() -> None:
    ids = [f"request-{i}" for i in range(20_000)]
    picked = [shadow_sampled(i, 20) for i in ids]
    assert picked == [shadow_sampled(i, 20) for i in ids]
    assert 0.18 < sum(picked) / len(ids) < 0.22
    assert not any(shadow_sampled(i, 0) for i in ids[:100])
    assert all(shadow_sampled(i, 100) for i in ids[:100])


def test_a_full_queue_drops_and_counts_instead_of_waiting(settings: Settings) -> None:
    runner = ShadowRunner(settings.replace(log_queue_size=1))
    runner.close()  # no background thread: the queue stays full
    model = ServingModel(version="v2", metadata={}, lists={}, cold="a+2000")
    before = REGISTRY.get_sample_value("movierec_shadow_dropped_total") or 0.0
    for i in range(3):
        runner.offer(ShadowTask(model, f"r{i}", "2025-03-01T10:00:00.000+00:00", i, "v1", "x"))
    after = REGISTRY.get_sample_value("movierec_shadow_dropped_total") or 0.0
    assert after - before == 2


def test_the_runner_survives_a_failed_batch(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = ShadowRunner(settings)
    written: list[dict] = []
    calls = iter([ValueError("a bug in a record"), None])

    def flaky_write(records: list[dict]) -> None:
        error = next(calls, None)
        if error is not None:
            raise error
        written.extend(records)

    monkeypatch.setattr(runner, "_write", flaky_write)
    model = ServingModel(version="v2", metadata={}, lists={}, cold="a+2000")
    ts = "2025-03-01T10:00:00.000+00:00"
    runner.offer(ShadowTask(model, "r1", ts, 1, "v1", "x"))
    wait_until(lambda: runner.queue.empty())
    runner.offer(ShadowTask(model, "r2", ts, 2, "v1", "x"))
    try:
        wait_until(lambda: len(written) == 1, timeout=5)
    finally:
        runner.close()
    assert written[0]["request_id"] == "r2"
