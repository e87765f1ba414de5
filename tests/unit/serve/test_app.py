"""The service through Flask's test client: contract, bad input, stickiness, hot routing."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime

import pytest
from flask.testing import FlaskClient
from werkzeug.test import Client

from movierec.core.settings import Settings
from movierec.registry.routing import Routing, arm_for, set_canary, set_stable
from movierec.serve import create_app, metrics
from movierec.serve.app import MillisecondClock, RecommendFastPath, request_id
from tests.servicekit import make_bundle, wait_until


@pytest.fixture
def served(settings: Settings) -> Settings:
    s = settings.replace(routing_check_seconds=0.05)
    make_bundle(s, "v1", "one")
    make_bundle(s, "v2", "two")
    set_stable(s, "v1", "test")
    return s


@pytest.fixture
def client(served: Settings) -> FlaskClient:
    app = create_app(served)
    yield app.test_client()
    state = app.extensions["movierec"]
    state.models.stop()
    state.served.close()


def _served_lines(client: FlaskClient, served: Settings) -> list[dict]:
    """Every served-log line written so far."""
    client.application.extensions["movierec"].served.flush()
    wait_until(lambda: any(served.logs_path.glob("served-*.jsonl")))
    return [
        json.loads(x)
        for f in served.logs_path.glob("served-*.jsonl")
        for x in f.read_text().splitlines()
    ]


def test_recommend_contract(client: FlaskClient) -> None:
    r = client.get("/recommend/7")
    assert r.status_code == 200
    assert r.mimetype == "text/plain"
    body = r.get_data(as_text=True)
    ids = body.split(",")
    assert len(ids) == 20 and " " not in body and "\n" not in body
    assert ids[0] == "one+movie+7"
    assert r.headers["X-Model-Version"] == "v1"
    assert len(r.headers["X-Request-ID"]) == 36
    cold = client.get("/recommend/123456789").get_data(as_text=True)
    assert cold.split(",")[0] == "one+popular+0"


@pytest.mark.parametrize(
    "path",
    [
        "/recommend/abc",
        "/recommend/-1",
        "/recommend/" + "9" * 40,
        "/recommend/%00",
        "/recommend/%D9%A1%D9%A2",  # Arabic-Indic digits
        "/recommend/+5",
        "/recommend/%205",
        "/recommend/1.5",
        "/recommend/1/2",
        "/recommend/" + "1" * 5000,
        "/recommend/%FF%FE",
    ],
)
def test_bad_user_ids_get_a_one_line_4xx(client: FlaskClient, path: str) -> None:
    r = client.get(path)
    assert 400 <= r.status_code < 500, (path, r.status_code)
    text = r.get_data(as_text=True)
    assert "\n" not in text and 0 < len(text) < 200


def test_unknown_routes_and_methods(client: FlaskClient) -> None:
    assert client.get("/nope").status_code == 404
    assert client.get("/recommend/").status_code == 404
    r = client.post("/recommend/1")
    assert r.status_code == 405 and r.headers["Allow"] and "GET" in r.headers["Allow"]
    for method in ("PUT", "DELETE", "PATCH", "PROPFIND", "BREW"):
        r = client.open("/recommend/1", method=method)
        assert r.status_code == 405, method
        assert r.get_data(as_text=True) == f"method {method} not allowed on /recommend/1"
    newline = client.get("/nope%0Aevil").get_data(as_text=True)
    assert "\n" not in newline and "\\n" in newline


def test_the_openapi_document_is_served(client: FlaskClient) -> None:
    doc = client.get("/openapi.json").json
    assert doc["openapi"].startswith("3.")
    assert {"/recommend/{user_id}", "/healthz", "/readyz", "/metrics"} <= set(doc["paths"])
    ready = client.get("/readyz").json
    assert set(ready) >= set(doc["paths"]["/readyz"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"]["required"])  # fmt: skip


def test_health_ready_and_metrics(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["stable"] == "v1"
    client.get("/recommend/1")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'movierec_requests_total{arm="stable",model_version="v1",status="200"}' in text
    assert "movierec_request_latency_seconds_bucket" in text


def test_every_response_is_logged(client: FlaskClient, served: Settings) -> None:
    ids = [client.get(f"/recommend/{u}").headers["X-Request-ID"] for u in range(5)]
    client.get("/recommend/abc")
    lines = _served_lines(client, served)
    assert {line["request_id"] for line in lines} >= set(ids)
    assert any(line["status"] == 400 for line in lines)
    from movierec.core.provenance import find_prediction

    rec = find_prediction(served, ids[3])
    assert rec is not None and rec.user_id == 3 and rec.model_version == "v1"


def test_routing_changes_are_picked_up_and_sticky(client: FlaskClient, served: Settings) -> None:
    salt = served.serving.release_salt
    set_canary(served, "v2", 30, "test")
    wait_until(lambda: client.get("/readyz").json["canary"] == "v2")
    routing = Routing("v1", "v2", 30, "", "")
    for u in range(100):
        expect = "two" if arm_for(u, routing, salt) == "canary" else "one"
        assert client.get(f"/recommend/{u}").get_data(as_text=True).startswith(expect)


def test_a_corrupt_model_is_refused_and_the_old_one_keeps_serving(
    client: FlaskClient, served: Settings
) -> None:
    bad = make_bundle(served, "v3", "three")
    (bad / "recommendations.parquet").write_bytes(b"garbage")
    set_stable(served, "v3", "bad")
    wait_until(lambda: "v3" in client.get("/readyz").json["refused"])
    r = client.get("/recommend/1")
    assert r.status_code == 200 and r.headers["X-Model-Version"] == "v1"
    assert "sha256" in client.get("/readyz").json["refused"]["v3"]


def test_rate_limit(served: Settings) -> None:
    app = create_app(served.replace(rate_limit_per_minute=5))
    c = app.test_client()
    codes = [c.get("/recommend/1").status_code for _ in range(7)]
    assert codes == [200] * 5 + [429] * 2
    app.extensions["movierec"].models.stop()


def _codes(served: Settings, headers: list[dict[str, str]], remote: str, **kw: object) -> list[int]:
    app = create_app(served.replace(rate_limit_per_minute=2, **kw))
    c = app.test_client()
    try:
        return [
            c.get("/recommend/1", headers=h, environ_base={"REMOTE_ADDR": remote}).status_code
            for h in headers
        ]
    finally:
        app.extensions["movierec"].models.stop()


def test_made_up_forwarded_headers_do_not_get_around_the_rate_limit(served: Settings) -> None:
    # issue 17: with a limit of 2 per minute, five requests each with its own header all passed
    made_up = [{"X-Forwarded-For": f"198.51.100.{i}"} for i in range(5)]
    assert _codes(served, made_up, "203.0.113.7") == [200, 200, 429, 429, 429]
    # the same through a trusted proxy that appends the real address (nginx)
    via_proxy = [{"X-Forwarded-For": f"198.51.100.{i}, 203.0.113.7"} for i in range(5)]
    codes = _codes(served, via_proxy, "10.0.0.2", trusted_proxies="10.0.0.2")
    assert codes == [200, 200, 429, 429, 429]


def test_clients_behind_a_trusted_proxy_get_a_limit_each(served: Settings) -> None:
    clients = [{"X-Forwarded-For": f"203.0.113.{i % 3}"} for i in range(6)]
    codes = _codes(served, clients, "10.0.0.2", trusted_proxies="10.0.0.0/8")
    assert codes == [200] * 6


def test_a_failing_model_gets_a_counted_and_logged_500(
    client: FlaskClient, served: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = client.application.extensions["movierec"].models.snapshot.stable

    def broken(user_id: int) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(model, "recommend", broken)
    r = client.get("/recommend/4")
    assert r.status_code == 500 and r.get_data(as_text=True) == "internal error"
    assert r.headers["X-Model-Version"] == "v1"
    text = client.get("/metrics").get_data(as_text=True)
    assert 'movierec_requests_total{arm="stable",model_version="v1",status="500"}' in text
    lines = _served_lines(client, served)
    assert any(line["status"] == 500 and line["user_id"] == 4 for line in lines)


def test_the_fast_path_answers_as_flask_does_and_leaves_the_rest_to_it(
    client: FlaskClient,
) -> None:
    fast = client.application.wsgi_app
    assert isinstance(fast, RecommendFastPath)
    through_flask = Client(fast.flask_wsgi)
    paths = ["/recommend/7", "/recommend/0", "/recommend/123456789", "/recommend/00042"]
    paths += ["/recommend/9223372036854775808", "/recommend/12345678901234567890"]
    for path in paths:
        a, b = client.get(path), through_flask.get(path)
        assert a.status_code == b.status_code, path
        assert a.get_data() == b.get_data(), path
        assert a.headers["Content-Type"] == b.headers["Content-Type"], path
        assert a.headers["X-Model-Version"] == b.headers["X-Model-Version"], path
        assert a.headers["X-Request-ID"] != b.headers["X-Request-ID"], path

    def nothing_else(environ: dict, start_response: object) -> list[bytes]:
        raise AssertionError(f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']} reached Flask")

    fast.flask_wsgi = nothing_else  # type: ignore[method-assign]
    assert client.get("/recommend/7").status_code == 200  # answered before Flask
    for method, path in (("GET", "/recommend/x7"), ("HEAD", "/recommend/7"), ("GET", "/healthz")):
        with pytest.raises(AssertionError, match="reached Flask"):
            client.open(path, method=method)


def test_a_flask_hook_added_later_runs_on_recommend_too(client: FlaskClient) -> None:
    """The fast path steps aside for an app with request hooks: a header, a log line or a
    check someone adds with before_request/after_request/teardown_request is not silently
    skipped on /recommend."""
    app = client.application
    seen: list[str] = []

    @app.before_request
    def before() -> None:
        seen.append("before")

    @app.after_request
    def after(resp):  # type: ignore[no-untyped-def]
        resp.headers["X-Hooked"] = "yes"
        return resp

    @app.teardown_request
    def teardown(_exc: BaseException | None) -> None:
        seen.append("teardown")

    for path in ("/recommend/7", "/recommend/99999999999999999999", "/recommend/x"):
        r = client.get(path)
        assert r.headers.get("X-Hooked") == "yes", path
        assert "X-Request-ID" in r.headers or r.status_code == 404, path
    assert seen.count("before") == 3 and seen.count("teardown") == 3
    assert client.get("/recommend/7").get_data(as_text=True).count(",") == 19


def test_a_model_no_longer_served_reads_0_without_clearing_the_gauge(
    client: FlaskClient, served: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prometheus_client cannot clear labels in multiprocess mode (each gunicorn worker warned
    at start, and the old series stayed at 1): a version routed away is set to 0."""

    def no_clear() -> None:
        raise AssertionError("MODEL_INFO.clear() warns in multiprocess mode")

    monkeypatch.setattr(metrics.MODEL_INFO, "clear", no_clear)
    set_stable(served, "v2", "test")
    wait_until(lambda: client.get("/readyz").get_json()["stable"] == "v2")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'movierec_model_loaded{arm="stable",model_version="v2"} 1.0' in text
    assert 'movierec_model_loaded{arm="stable",model_version="v1"} 0.0' in text


def test_request_ids_are_random_version_4_uuids() -> None:
    ids = [request_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for rid in ids:
        parsed = uuid.UUID(rid)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, rid)
    assert {rid[19] for rid in ids} == set("89ab")  # the variant digit takes its 4 values


def test_the_clock_writes_utc_now_to_the_millisecond_as_isoformat_does() -> None:
    clock = MillisecondClock()
    for _ in range(3):
        now = datetime.now(UTC)
        before = now.replace(microsecond=now.microsecond // 1000 * 1000)
        text = clock.now()
        after = datetime.now(UTC)
        assert len(text) == len(after.isoformat(timespec="milliseconds"))
        assert before <= datetime.fromisoformat(text) <= after


def test_forked_workers_make_different_request_ids() -> None:
    """gunicorn forks its workers from one master: each must draw its own ids."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first id, then gone
        os.write(write, request_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    assert len(child) == 36
    assert child != request_id()
