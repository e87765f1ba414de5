"""The Flask application: `create_app(settings=None)`; routes in a blueprint.

`GET /recommend/<user_id>` answers 20 comma-separated movie ids (text/plain, no spaces, no
newline), best first, from the user's arm (sticky stable/canary routing); unknown users get
the cold-start list. A user id that is not a non-negative integer (ASCII digits, below 2**63)
gets a 400 with a one-line reason. Every response is logged (served log + prediction events).

The rate limit counts per client address (`serve.identity`: X-Forwarded-For only from trusted
proxies), per worker or shared through Redis (`serve.ratelimit`). The OpenAPI 3 document of
these routes is served at `/openapi.json` (`serve.openapi`).

While routing names a shadow candidate, a sample of stable's requests is handed to it
(`serve.shadow`): it computes its list off the request path, never served.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.http import HTTP_STATUS_CODES

from movierec.core.schema import MAX_SERVED_USER_ID
from movierec.core.settings import Settings
from movierec.registry.routing import arm_for
from movierec.serve import metrics
from movierec.serve.datagauges import DataQualityGauges
from movierec.serve.identity import ClientIdentity
from movierec.serve.live.answers import LiveRecommender
from movierec.serve.models import ModelSet
from movierec.serve.openapi import openapi_document
from movierec.serve.ratelimit import make_limiter
from movierec.serve.servedlog import ServedLog
from movierec.serve.shadow import ShadowRunner, ShadowTask, shadow_sampled

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

_ID_RE = re.compile(r"[0-9]{1,19}")
RECOMMEND = "/recommend/"

bp = Blueprint("movierec", __name__)


def _text(body: str, status: int) -> Response:
    return Response(body, status=status, mimetype="text/plain")


def _shown(text: str, limit: int) -> str:
    """A client's text fit for a one-line reason: cut short, control characters escaped."""
    return text[:limit].encode("unicode_escape").decode("ascii")


def _parse_user_id(raw: str) -> int | str:
    """The id, or the reason it is not one."""
    if not _ID_RE.fullmatch(raw):
        return f"user id '{_shown(raw, 40)}' is not a non-negative integer"
    value = int(raw)
    if value > MAX_SERVED_USER_ID:
        return f"user id {raw[:25]}... is too large"
    return value


# A version 4 UUID's variant digit (binary 10xx) for each value of its random hex digit.
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def request_id() -> str:
    """A random (version 4) UUID's text, as `str(uuid.uuid4())` writes it. Its bits come from
    `random` (reseeded in every forked worker), not `os.urandom`: a request id needs to be
    unique, not secret, and `os.urandom` is a system call that lets go of the GIL, so the
    request thread queued again behind the others (6.7% of a worker's samples under load,
    py-spy). 1 us against uuid4's 6."""
    h = f"{random.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


class MillisecondClock:
    """UTC now as `datetime.now(UTC).isoformat(timespec="milliseconds")` writes it, the
    second's text made once a second (1.6 us a call against 4.1)."""

    def __init__(self) -> None:
        self._second: tuple[int, str] = (-1, "")

    def now(self) -> str:
        now = time.time()
        second = int(now)
        cached = self._second  # one tuple: threads see the old second's or the new one's
        if cached[0] != second:
            text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            cached = self._second = (second, text)
        return f"{cached[1]}.{int((now - second) * 1000):03d}+00:00"


CLOCK = MillisecondClock()


@dataclass(frozen=True)
class RecommendRequest:
    """What `/recommend/<raw>` is asked with, whichever entrance took it."""

    raw: str  # the path's user id, as sent
    remote_addr: str | None
    forwarded: str | None  # X-Forwarded-For


class Answered(NamedTuple):
    """A `/recommend` response: status, text body and the request's headers."""

    status: int
    body: str
    headers: list[tuple[str, str]]


@dataclass(frozen=True)
class _Outcome:
    """What the served log records of a request beside its status."""

    user_id: int = -1  # -1: no valid user id
    arm: str = "none"
    version: str = "none"
    items: str = ""


_NO_OUTCOME = _Outcome()


@bp.get("/recommend/<path:raw>")
def recommend(raw: str) -> Response:
    state: AppState = current_app.extensions["movierec"]
    forwarded = request.headers.get("X-Forwarded-For")
    answered = answer(state, RecommendRequest(raw, request.remote_addr, forwarded))
    resp = _text(answered.body, answered.status)
    resp.headers.extend(answered.headers)
    return resp


def answer(state: AppState, req: RecommendRequest) -> Answered:
    """`/recommend/<raw>`: status, body and the request's headers (id, model version), the
    response logged. The one answer of both entrances: the Flask view and the WSGI fast path
    (`RecommendFastPath`)."""
    start = time.perf_counter()
    rid = request_id()
    client = state.identity.client(req.remote_addr, req.forwarded)
    if not state.limiter.allow(client):
        metrics.RATE_LIMITED.inc()
        return _finish(state, rid, start, _NO_OUTCOME, 429, "too many requests")
    parsed = _parse_user_id(req.raw)
    if isinstance(parsed, str):
        return _finish(state, rid, start, _NO_OUTCOME, 400, parsed)
    snap = state.models.snapshot
    if snap.stable is None:
        return _finish(state, rid, start, _Outcome(parsed), 503, "no model loaded yet")
    arm = "stable"
    model = snap.stable
    if snap.canary is not None and snap.routing is not None:
        arm = arm_for(parsed, snap.routing, state.settings.serving.release_salt)
        if arm == "canary":
            model = snap.canary
    try:
        items = state.live.recommend(model, arm, parsed)
    except Exception:  # counted, logged and answered like every other response
        log.exception("model %s failed to recommend for user %d", model.version, parsed)
        failed = _Outcome(parsed, arm, model.version)
        return _finish(state, rid, start, failed, 500, "internal error")
    shadow, routing = snap.shadow, snap.routing
    if arm == "stable" and shadow and routing and shadow_sampled(rid, routing.shadow_pct):
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        state.shadow.offer(ShadowTask(shadow, rid, now, parsed, model.version, items))
    return _finish(state, rid, start, _Outcome(parsed, arm, model.version, items), 200, items)


def _finish(
    state: AppState, rid: str, start: float, outcome: _Outcome, status: int, body: str
) -> Answered:
    """Count, time and log the response."""
    seconds = time.perf_counter() - start
    version = outcome.version
    metrics.REQUESTS_BY(str(status), outcome.arm, version).inc()
    metrics.LATENCY_BY(outcome.arm).observe(seconds)
    features = f"{version}:{outcome.user_id}:{'warm' if status == 200 else status}"
    state.served.record(
        {
            "request_id": rid,
            "ts": CLOCK.now(),
            "user_id": outcome.user_id,
            "arm": outcome.arm,
            "model_version": version,
            "items": outcome.items,
            "latency_ms": round(seconds * 1000, 3),
            "status": status,
            "features_sha256": hashlib.sha256(features.encode()).hexdigest(),
        }
    )
    return Answered(status, body, [("X-Request-ID", rid), ("X-Model-Version", version)])


@bp.get("/healthz")
def healthz() -> Response:
    return _text("ok", 200)


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    state: AppState = current_app.extensions["movierec"]
    snap = state.models.snapshot
    body = {
        "ready": snap.stable is not None,
        "stable": snap.stable.version if snap.stable else None,
        "canary": snap.canary.version if snap.canary else None,
        "canary_pct": snap.canary_pct,
        "shadow": snap.shadow.version if snap.shadow else None,
        "routing_updated_at": snap.routing.updated_at if snap.routing else None,
        "refused": snap.refused,
        "degraded": _degraded(state),
    }
    return jsonify(body), 200 if snap.stable is not None else 503


def _degraded(state: AppState) -> list[str]:
    """What this worker serves around: a log it cannot write, a bundle gone from disk."""
    out = [
        f"served log cannot be written, records wait in the spill file: {problem}"
        for problem in state.served.degraded()
    ]
    for version, folder in sorted(state.models.missing.items()):
        out.append(
            f"bundle of {version} is gone ({folder}): served from memory, "
            "a restart could not load it"
        )
    return out


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document())


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    state: AppState = current_app.extensions["movierec"]
    state.online.refresh()  # the evaluator's numbers: a stat per second, a parse per change
    state.data_quality.refresh()  # the DataPipeline's latest refresh report, the same way
    data, content_type = metrics.render()
    return Response(data, mimetype=content_type.split(";")[0], content_type=content_type)


class RecommendFastPath:
    """WSGI middleware in front of Flask (`app.wsgi_app`): `GET /recommend/<digits>` is
    answered by `answer` without Flask's request context, URL map and response objects, which
    cost about 90 us a request, as much as the whole of our own work. Every other request -
    another route or method, an id that is not digits, HEAD - goes to Flask, which answers the
    same way through the same `answer`.

    The fast path steps aside whenever the Flask app has request hooks (`before_request`,
    `after_request`, `teardown_request`): a hook added later runs on `/recommend` too, at
    Flask's cost, rather than silently not at all (tested)."""

    def __init__(self, app: Flask, state: AppState):
        self.flask_wsgi: WSGIApplication = app.wsgi_app
        self.app = app
        self.state = state

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        raw = path[len(RECOMMEND) :]
        fast = environ.get("REQUEST_METHOD") == "GET" and path.startswith(RECOMMEND)
        if not (fast and _ID_RE.fullmatch(raw)) or self._hooked():
            return self.flask_wsgi(environ, start_response)
        req = RecommendRequest(raw, environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"))
        try:
            answered = answer(self.state, req)
        except Exception:  # as Flask's 500 handler answers
            log.exception("unhandled error")
            answered = Answered(500, "internal error", [])
        data = answered.body.encode()
        start_response(
            f"{answered.status} {HTTP_STATUS_CODES.get(answered.status, 'UNKNOWN').upper()}",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(data))),
                *answered.headers,
            ],
        )
        return [data]

    def _hooked(self) -> bool:
        app = self.app
        return bool(
            app.before_request_funcs or app.after_request_funcs or app.teardown_request_funcs
        )


class AppState:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.models = ModelSet(settings)
        self.live = LiveRecommender(settings, snapshot=lambda: self.models.snapshot)
        self.served = ServedLog(settings)
        self.shadow = ShadowRunner(settings)
        self.identity = ClientIdentity(settings.serving.trusted_proxies)
        self.limiter = make_limiter(
            settings.serving.rate_limit_per_minute, settings.serving.rate_limit_storage
        )
        self.online = metrics.OnlineGauges(settings.online_metrics_file)
        self.data_quality = DataQualityGauges(settings.lake_path / "_state.json")


def create_app(settings: Settings | None = None) -> Flask:
    """The application factory (gunicorn: `movierec.serve:create_app()`)."""
    settings = settings or Settings.from_env()
    app = Flask("movierec")
    state = AppState(settings)
    state.models.start()
    state.live.start()
    app.extensions["movierec"] = state
    app.register_blueprint(bp)
    app.wsgi_app = RecommendFastPath(app, state)  # type: ignore[method-assign]

    @app.errorhandler(404)
    def not_found(_exc: Exception) -> Response:
        return _text(f"no such route: {_shown(request.path, 80)}", 404)

    @app.errorhandler(405)
    def not_allowed(exc: Exception) -> Response:
        method, path = _shown(request.method, 20), _shown(request.path, 80)
        resp = _text(f"method {method} not allowed on {path}", 405)
        allowed = getattr(exc, "valid_methods", None)
        if allowed:
            resp.headers["Allow"] = ", ".join(allowed)
        return resp

    @app.errorhandler(500)
    def internal(_exc: Exception) -> Response:
        log.exception("unhandled error")
        return _text("internal error", 500)

    return app
