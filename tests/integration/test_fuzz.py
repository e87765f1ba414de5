"""A real fuzzer against a real gunicorn on loopback: Schemathesis generates requests from
`/openapi.json` (valid and invalid, a bounded number of examples) and checks every response
against the document; then unknown methods, very long headers and paths, and many idle
connections held open while other clients keep being answered."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from movierec.core.settings import Settings
from movierec.registry.routing import set_stable
from tests.servicekit import Load, failed, gunicorn, make_bundle

EXAMPLES = 150  # per generation mode, over every operation


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.conftest import make_settings

    s: Settings = make_settings(tmp_path_factory.mktemp("fuzz"))
    make_bundle(s, "v1", "one")
    set_stable(s, "v1", "start")
    with gunicorn(s) as url:
        yield url


def _one_line_reason(response: schemathesis.Response) -> None:
    if 400 <= response.status_code < 500:
        text = response.text
        assert text and "\n" not in text.strip() and len(text) < 300, (response.status_code, text)


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schemathesis_finds_no_5xx_and_no_mismatch(service: str, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{service}/openapi.json")
    seen: dict[int, int] = {}

    @given(case=schema.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=service, timeout=10)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, (case.method, case.formatted_path, response.text)
        case.validate_response(response)
        _one_line_reason(response)

    run()
    print(
        f"FAULT schemathesis {mode.value} | {EXAMPLES} examples | statuses={sorted(seen.items())}"
    )
    assert sum(seen.values()) >= 50
    if mode is GenerationMode.NEGATIVE:
        assert any(400 <= code < 500 for code in seen)


def _raw(url: str, data: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, return what comes back until the server closes or times out."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


@pytest.mark.slow
def test_unknown_methods_and_oversized_requests_get_a_4xx(service: str) -> None:
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND", "BREW", "X" * 30):
        r = requests.request(method, f"{service}/recommend/1", timeout=10)
        assert r.status_code in (400, 405) or (method == "OPTIONS" and r.status_code == 200)
        if r.status_code == 405:
            assert "\n" not in r.text and "GET" in r.headers["Allow"]
    long_path = _raw(service, b"GET /recommend/" + b"1" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    long_header = _raw(
        service, b"GET /recommend/1 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    )
    many_headers = _raw(
        service,
        b"GET /recommend/1 HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-H%d: v\r\n" % i for i in range(500))
        + b"\r\n",
    )
    for answer in (long_path, long_header, many_headers):
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500, answer[:200]
    print("FAULT oversized requests | path 20 kB, header 20 kB, 500 headers | statuses 4xx")
    assert requests.get(f"{service}/recommend/1", timeout=10).status_code == 200


@pytest.mark.slow
def test_idle_connections_do_not_starve_other_clients(service: str) -> None:
    host, port = service.removeprefix("http://").split(":")
    idle = []
    try:
        for _ in range(300):  # connected, never a byte sent
            idle.append(socket.create_connection((host, int(port)), timeout=5))
        keep = requests.Session()  # and keep-alive connections left idle after one request
        assert keep.get(f"{service}/healthz", timeout=5).status_code == 200
        with Load(service, clients=4) as load:
            load.wait_for(500, timeout=60)
            outcomes = load.stop()
    finally:
        for sock in idle:
            sock.close()
    slowest = max(o.seconds for o in outcomes)
    print(
        f"FAULT idle connections | 300 idle sockets + 4 keep-alive clients | "
        f"requests={len(outcomes)}, failed={len(failed(outcomes))}, slowest_s={slowest:.3f}"
    )
    assert failed(outcomes) == []
    assert slowest < 5.0
