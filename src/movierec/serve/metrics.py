"""Prometheus metrics of the service, correct across gunicorn workers.

With PROMETHEUS_MULTIPROC_DIR set (by `movierec serve` before gunicorn starts), every worker
writes its values to memory-mapped files there and `/metrics` aggregates all of them;
without it (tests with Flask's client) the default in-process registry is used.

The `movierec_online_*` gauges republish what the online evaluator last wrote to
`Settings.online_metrics_file` (per arm: CTR, users, satisfaction ratio, errors, latency,
online RMSE, minutes per viewing, completed viewings; the canary's CTR lift with its interval
and the margin), so Prometheus can
alert on them. `OnlineGauges.refresh()` runs when /metrics is scraped: it stats the file at
most once per `check_seconds` and parses it only when its signature changed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from movierec.core.errors import DataValidationError
from movierec.core.online_metrics import OnlineMetrics
from movierec.core.vocabulary import ARMS

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
RATE_LIMIT_ERRORS = Counter(
    "movierec_rate_limit_errors_total",
    "Requests let through because the shared rate-limit storage (Redis) failed",
)
LIVE_ANSWERS = Counter(
    "movierec_live_answers_total",
    "Answers of /recommend by how the list was made: precomputed (no new events), kept (folded "
    "in from the user's whole history when their events arrived, off the request path), "
    "fold_in (folded in on the request), filtered (a list made before the user's "
    "latest events, without every movie of their history: a lists-only bundle's, or their "
    "previous fold-in while the next is being made), fallback (the online store could not "
    "answer)",
    ["arm", "path"],
)


class Series:
    """A labelled metric's series, each looked up once. `labels()` checks the values and takes
    the metric's lock on every call (a labelled increment through it: 5 to 8 us);
    /recommend counts three series a request.
    Values are given in the metric's label order."""

    def __init__(self, metric: Any):
        self.metric = metric
        self._series: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        series = self._series.get(values)
        if series is None:  # two threads at once get the same series from labels()
            series = self._series[values] = self.metric.labels(*values)
        return series


REQUESTS_BY = Series(REQUESTS)
LATENCY_BY = Series(LATENCY)
LIVE_ANSWERS_BY = Series(LIVE_ANSWERS)

LIVE_FALLBACKS = Counter(
    "movierec_live_fallbacks_total",
    "Requests answered from the precomputed list because the online store could not answer "
    "(missing, locked, unreachable, error) or fold-in failed (fold_in_error)",
    ["reason"],
)
FOLD_IN_WARM = Counter(
    "movierec_fold_in_warm_total",
    "Fold-ins made when the events arrived, off the request path (serve.live.warmer): computed "
    "(folded in here, kept for the user's requests and shared), shared (the list another "
    "worker or movierec fold-in made from the same history, kept), deferred (put off to wait "
    "for movierec fold-in's list), stale (the user changed again meanwhile: queued anew), "
    "dropped (the queue was full: folded in on the request), failed (the store or the model), "
    "share_failed (the shared lists could not be read or written: folded in here)",
    ["event"],
)
ROUTING_REFUSED = Counter(
    "movierec_routing_refused_total",
    "Changes of routing.json refused as unreadable or invalid (the previous routing serves on)",
)
SERVED_LOG_SPILLED = Counter(
    "movierec_served_log_spilled_total",
    "Served-log records written to the spill file because the log could not take them",
)
SERVED_LOG_DEGRADED = Gauge(
    "movierec_served_log_degraded",
    "1 while a worker cannot write the served log (records wait in memory or the spill file)",
    multiprocess_mode="livemax",
)
BUNDLE_MISSING = Gauge(
    "movierec_model_bundle_missing",
    "Served models whose bundle is gone from disk (served from memory; a restart cannot load)",
    multiprocess_mode="livemax",
)
SHADOW_LISTS = Counter(
    "movierec_shadow_lists_total",
    "Lists the shadow candidate computed (off the request path) and logged",
)
SHADOW_DROPPED = Counter(
    "movierec_shadow_dropped_total",
    "Sampled requests whose shadow list was not computed or logged (queue full, write error)",
)

# What the online evaluator measured (per arm, over the period since routing last changed).
# Every worker may republish the file; "mostrecent" keeps the value written last.
_ARM = ["arm"]
ONLINE_CTR = Gauge(
    "movierec_online_ctr",
    "Click-through rate of the arm's mature requests, from online_metrics.json",
    _ARM,
    multiprocess_mode="mostrecent",
)
ONLINE_SATISFACTION = Gauge(
    "movierec_online_satisfaction_ratio",
    "Mean rating of female users / mean rating of male users on the arm's recommended movies",
    _ARM,
    multiprocess_mode="mostrecent",
)
ONLINE_ERROR_RATE = Gauge(
    "movierec_online_error_rate",
    "Share of the arm's requests answered 5xx in the evaluated period",
    _ARM,
    multiprocess_mode="mostrecent",
)
ONLINE_LATENCY_P99 = Gauge(
    "movierec_online_latency_p99_seconds",
    "99th percentile of the arm's served-log latency in the evaluated period",
    _ARM,
    multiprocess_mode="mostrecent",
)
ONLINE_REQUESTS = Gauge(
    "movierec_online_requests",
    "Requests the arm served in the evaluated period",
    _ARM,
    multiprocess_mode="mostrecent",
)
ONLINE_MATURE = Gauge(
    "movierec_online_mature_requests",
    "Requests whose whole click window was observed (the CTR's denominator)",
    _ARM,
    multiprocess_mode="mostrecent",
)
ONLINE_RECOMMENDATIONS = Gauge(
    "movierec_online_recommendations",
    "Movie ids the arm recommended in the evaluated period",
    _ARM,
    multiprocess_mode="mostrecent",
)
ONLINE_USERS = Gauge(
    "movierec_online_users",
    "Users with evaluated requests in the arm (the unit of the release statistics)",
    _ARM,
    multiprocess_mode="mostrecent",
)
ONLINE_RMSE = Gauge(
    "movierec_online_rmse",
    "RMSE of the ratings users gave after a recommendation against the arm's prediction",
    _ARM,
    multiprocess_mode="mostrecent",
)
ONLINE_MINUTES = Gauge(
    "movierec_online_minutes_per_viewing",
    "Minutes watched per viewing started from the arm's recommendations",
    _ARM,
    multiprocess_mode="mostrecent",
)
ONLINE_COMPLETED = Gauge(
    "movierec_online_completed_viewing_share",
    "Share of the arm's clicked viewings that lasted completed_viewing_minutes or more",
    _ARM,
    multiprocess_mode="mostrecent",
)
ONLINE_LIFT = Gauge(
    "movierec_online_ctr_lift",
    "Canary CTR / stable CTR - 1 (bound=estimate), its always-valid interval (low, high) "
    "and the tolerated loss (margin, negative)",
    ["bound"],
    multiprocess_mode="mostrecent",
)
ONLINE_EVALUATED = Gauge(
    "movierec_online_evaluated_timestamp_seconds",
    "When the online evaluator wrote online_metrics.json (Unix time; 0: not read yet)",
    multiprocess_mode="mostrecent",
)

# gauge <- (ArmMetrics field, factor) of online_metrics.json's "arms"
_ONLINE_FIELDS: tuple[tuple[Gauge, str, float], ...] = (
    (ONLINE_CTR, "ctr", 1.0),
    (ONLINE_SATISFACTION, "female_male_rating_ratio", 1.0),
    (ONLINE_ERROR_RATE, "error_rate", 1.0),
    (ONLINE_LATENCY_P99, "latency_p99_ms", 0.001),
    (ONLINE_REQUESTS, "requests", 1.0),
    (ONLINE_MATURE, "mature_requests", 1.0),
    (ONLINE_RECOMMENDATIONS, "recommendations", 1.0),
    (ONLINE_USERS, "users", 1.0),
    (ONLINE_RMSE, "online_rmse", 1.0),
    (ONLINE_MINUTES, "minutes_per_viewing", 1.0),
    (ONLINE_COMPLETED, "completed_share", 1.0),
)
LIFT_BOUNDS = (("estimate", "value"), ("low", "low"), ("high", "high"))

EXPORTED = (
    "movierec_requests_total",
    "movierec_request_latency_seconds",
    "movierec_canary_percent",
    "movierec_model_loaded",
    "movierec_model_load_failures_total",
    "movierec_served_log_dropped_total",
    "movierec_rate_limited_total",
    "movierec_rate_limit_errors_total",
    "movierec_routing_refused_total",
    "movierec_served_log_spilled_total",
    "movierec_served_log_degraded",
    "movierec_model_bundle_missing",
    "movierec_shadow_lists_total",
    "movierec_shadow_dropped_total",
    "movierec_live_answers_total",
    "movierec_live_fallbacks_total",
    "movierec_online_ctr",
    "movierec_online_satisfaction_ratio",
    "movierec_online_error_rate",
    "movierec_online_latency_p99_seconds",
    "movierec_online_requests",
    "movierec_online_mature_requests",
    "movierec_online_recommendations",
    "movierec_online_users",
    "movierec_online_rmse",
    "movierec_online_minutes_per_viewing",
    "movierec_online_completed_viewing_share",
    "movierec_online_ctr_lift",
    "movierec_online_evaluated_timestamp_seconds",
)

log = logging.getLogger(__name__)


def render() -> tuple[bytes, str]:
    """The exposition text of every worker (or of this process alone)."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=folder)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class OnlineGauges:
    """Keeps the `movierec_online_*` gauges equal to `path` (the evaluator's
    online_metrics.json, `Settings.online_metrics_file`).

    `refresh()` is cheap enough to call on every scrape: at most one stat per `check_seconds`,
    a parse only when (mtime, size, inode) changed. A value the file lacks (no canary, no
    ratings yet) becomes NaN, which no alert threshold matches; an unreadable file keeps the
    previous values. Until the file is first seen, no series are exported.
    """

    def __init__(self, path: Path, check_seconds: float = 1.0):
        self.path = path
        self.check_seconds = check_seconds
        self._checked = -math.inf
        self._signature: tuple[int, int, int] | None = None
        self._lock = threading.Lock()

    def refresh(self) -> bool:
        """Republish the file if it changed since the last look. True when gauges were set."""
        if not self._lock.acquire(blocking=False):
            return False  # another thread is refreshing right now
        try:
            now = time.monotonic()
            if now - self._checked < self.check_seconds:
                return False
            self._checked = now
            try:
                st = self.path.stat()
                sig: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
            except FileNotFoundError:
                sig = None
            if sig == self._signature:
                return False
            self._signature = sig
            if sig is None:  # the file went away: its numbers are no longer current
                self._publish({})
                return True
            try:
                record = json.loads(self.path.read_bytes())
                if not isinstance(record, dict):
                    raise ValueError(f"top level is {type(record).__name__}, not an object")
            except (OSError, ValueError) as exc:
                log.warning("unreadable %s, keeping the previous online gauges: %s", self.path, exc)
                return False
            self._publish(record)
            return True
        finally:
            self._lock.release()

    @staticmethod
    def _publish(raw: dict[str, Any]) -> None:
        """The record's numbers (read by its one reader, `core.online_metrics`); NaN for what
        it lacks (everything when there is none). A value of the wrong type keeps the previous
        numbers."""
        try:
            record = OnlineMetrics.from_json(raw, "online_metrics.json")
        except DataValidationError as exc:
            log.warning("keeping the previous online gauges: %s", exc)
            return
        for arm in ARMS:
            values = record.arms.get(arm)
            for gauge, name, factor in _ONLINE_FIELDS:
                gauge.labels(arm=arm).set(_number(getattr(values, name, None)) * factor)
        for bound, key in LIFT_BOUNDS:
            ONLINE_LIFT.labels(bound=bound).set(_number(getattr(record.lift, key)))
        ONLINE_LIFT.labels(bound="margin").set(-_number(record.margin))
        ONLINE_EVALUATED.set(_timestamp(record.evaluated_at))


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def _timestamp(value: object) -> float:
    if not isinstance(value, str):
        return math.nan
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return math.nan
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
