"""The service's OpenAPI 3 document, served at `/openapi.json`.

Written by hand from the routes in `serve.app` and the service contract in
`docs/contracts.md`, and checked against the running service by the fuzzer
(`tests/integration/test_fuzz.py`: Schemathesis generates requests from this document, valid
and invalid, and validates every response against it).
"""

from __future__ import annotations

from typing import Any

from movierec import __version__
from movierec.core.schema import MAX_SERVED_USER_ID


def _text(description: str, pattern: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if pattern:
        schema["pattern"] = pattern
    return {"description": description, "content": {"text/plain": {"schema": schema}}}


_ONE_LINE = "^[^\\n]+$"
_HEADERS = {
    "X-Request-ID": {
        "description": "The response's id in the served log (movierec trace REQUEST_ID)",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    },
    "X-Model-Version": {
        "description": "The model version that answered (`none` when no model did)",
        "required": True,
        "schema": {"type": "string"},
    },
}

_READY = {
    "type": "object",
    "required": ["ready", "stable", "canary", "canary_pct", "refused", "degraded"],
    "properties": {
        "ready": {"type": "boolean"},
        "stable": {"type": "string", "nullable": True},
        "canary": {"type": "string", "nullable": True},
        "canary_pct": {"type": "integer", "minimum": 0, "maximum": 100},
        "routing_updated_at": {"type": "string", "nullable": True},
        "refused": {"type": "object", "additionalProperties": {"type": "string"}},
        "degraded": {"type": "array", "items": {"type": "string"}},
    },
}


def _recommend() -> dict[str, Any]:
    def with_headers(resp: dict[str, Any]) -> dict[str, Any]:
        return {**resp, "headers": _HEADERS}

    return {
        "get": {
            "summary": "Up to 20 movie ids for a user, best first",
            "operationId": "recommend",
            "parameters": [
                {
                    "name": "user_id",
                    "in": "path",
                    "required": True,
                    "description": "A non-negative integer below 2**63 (ASCII digits)",
                    "schema": {"type": "integer", "minimum": 0, "maximum": MAX_SERVED_USER_ID},
                }
            ],
            "responses": {
                "200": with_headers(
                    _text(
                        "Comma-separated movie ids, no spaces, no newline (a cold-start list "
                        "for an unknown user)",
                        "^[^,\\s]+(,[^,\\s]+){0,19}$",
                    )
                ),
                "400": with_headers(_text("The user id is not a non-negative integer", _ONE_LINE)),
                "404": _text("No such route (for example an empty user id)", _ONE_LINE),
                "429": with_headers(_text("The client's rate limit is reached", _ONE_LINE)),
                "500": with_headers(_text("The model failed (counted and logged)", _ONE_LINE)),
                "503": with_headers(_text("No model is loaded yet", _ONE_LINE)),
            },
        }
    }


def openapi_document() -> dict[str, Any]:
    """The document (a fresh dict: callers may change it)."""
    plain = {"get": {"responses": {"200": _text("ok")}}}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "movierec",
            "version": __version__,
            "description": "Movie recommendations with stable/canary releases.",
        },
        "paths": {
            "/recommend/{user_id}": _recommend(),
            "/healthz": {**plain, "get": {**plain["get"], "summary": "The process is alive"}},
            "/readyz": {
                "get": {
                    "summary": "Models loaded; versions, canary percentage, refusals, degradation",
                    "responses": {
                        "200": {
                            "description": "Ready",
                            "content": {"application/json": {"schema": _READY}},
                        },
                        "503": {
                            "description": "No model loaded yet",
                            "content": {"application/json": {"schema": _READY}},
                        },
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics of every worker",
                    "responses": {"200": _text("Prometheus text exposition format")},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3 document",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
    }
