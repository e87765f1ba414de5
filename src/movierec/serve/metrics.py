"""Prometheus metrics of the service, correct across gunicorn workers.

With PROMETHEUS_MULTIPROC_DIR set (by `movierec serve` before gunicorn starts), every worker
writes its values to memory-mapped files there and `/metrics` aggregates all of them;
without it (tests with Flask's client) the default in-process registry is used.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.6, 1.0, 2.5)

REQUESTS = Counter(
    "movierec_requests_total",
    "Responses of /recommend by HTTP status, arm and model version",
    ["status", "arm", "model_version"],
)
LATENCY = Histogram(
    "movierec_request_latency_seconds",
    "Time to answer /recommend, by arm",
    ["arm"],
    buckets=LATENCY_BUCKETS,
)
CANARY_PCT = Gauge(
    "movierec_canary_percent",
    "Share of users routed to the canary model (0..100)",
    multiprocess_mode="mostrecent",
)
MODEL_INFO = Gauge(
    "movierec_model_loaded",
    "1 for each model version a worker serves, by arm",
    ["arm", "model_version"],
    multiprocess_mode="max",
)
LOAD_FAILURES = Counter(
    "movierec_model_load_failures_total",
    "Model bundles refused at load (missing, corrupt, failed hash check)",
    ["model_version"],
)
LOG_DROPPED = Counter(
    "movierec_served_log_dropped_total",
    "Served-log records dropped because the log writer fell behind",
)
RATE_LIMITED = Counter("movierec_rate_limited_total", "Requests refused with 429")

EXPORTED = (
    "movierec_requests_total",
    "movierec_request_latency_seconds",
    "movierec_canary_percent",
    "movierec_model_loaded",
    "movierec_model_load_failures_total",
    "movierec_served_log_dropped_total",
    "movierec_rate_limited_total",
)


def render() -> tuple[bytes, str]:
    """The exposition text of every worker (or of this process alone)."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=folder)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
