"""Data-quality gauges: what the DataPipeline's latest refresh report found (drift of the new
ratings against the training data, rating poisoning, quarantined lines), republished on the
service's /metrics so that Prometheus can alert on it and Grafana can draw it.

The DataPipeline's commit record (`data/lake/_state.json`) names its latest report; the gauges
follow it the way `OnlineGauges` follows online_metrics.json: at most one stat per second, a
parse only when the record changed.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from prometheus_client import Gauge

from movierec.serve.metrics import OnlineGauges, _number, _timestamp

log = logging.getLogger(__name__)


DATA_RATING_PSI = Gauge(
    "movierec_data_rating_psi",
    "PSI of the latest ingest's ratings against the training data (0.2: significant drift)",
    multiprocess_mode="mostrecent",
)
DATA_GENRE_PSI = Gauge(
    "movierec_data_genre_psi",
    "PSI of the genre mix of the latest ingest's ratings against the training data",
    multiprocess_mode="mostrecent",
)
DATA_ACTIVITY_KS = Gauge(
    "movierec_data_activity_ks",
    "Kolmogorov-Smirnov D of ratings per active user, latest ingest vs the training data",
    multiprocess_mode="mostrecent",
)
DATA_DRIFTED = Gauge(
    "movierec_data_drifted",
    "1 when the latest refresh report flagged drift, else 0",
    multiprocess_mode="mostrecent",
)
DATA_POISONED_MOVIES = Gauge(
    "movierec_data_poisoned_movies",
    "Movies whose burst of ratings the latest refresh report flagged as a poisoning attack",
    multiprocess_mode="mostrecent",
)
DATA_FLAGGED_EVENTS = Gauge(
    "movierec_data_flagged_events",
    "Rating events the latest refresh report excluded from training as suspected poisoning",
    multiprocess_mode="mostrecent",
)
DATA_QUARANTINED = Gauge(
    "movierec_data_quarantined_lines",
    "Event lines the latest ingest quarantined (malformed or invalid)",
    multiprocess_mode="mostrecent",
)
DATA_REFRESHED = Gauge(
    "movierec_data_refreshed_timestamp_seconds",
    "When the latest refresh report was written (Unix time)",
    multiprocess_mode="mostrecent",
)

EXPORTED = (
    "movierec_data_rating_psi",
    "movierec_data_genre_psi",
    "movierec_data_activity_ks",
    "movierec_data_drifted",
    "movierec_data_poisoned_movies",
    "movierec_data_flagged_events",
    "movierec_data_quarantined_lines",
    "movierec_data_refreshed_timestamp_seconds",
)


class DataQualityGauges(OnlineGauges):
    """Follows `lake_state` (the DataPipeline's `_state.json`) and republishes the refresh
    report it names. A missing or unreadable report leaves NaN, which no alert matches."""

    def __init__(self, lake_state: Path, check_seconds: float = 1.0):
        super().__init__(lake_state, check_seconds)

    def _publish(self, record: dict[str, Any]) -> None:  # type: ignore[override]
        report = _read_report(record.get("last_report"))
        drift = _section(report, "drift")
        poisoning = _section(report, "poisoning")
        ks = _section(drift, "activity_ks")
        DATA_RATING_PSI.set(_number(drift.get("rating_psi")))
        DATA_GENRE_PSI.set(_number(drift.get("genre_psi")))
        DATA_ACTIVITY_KS.set(_number(ks.get("statistic")))
        checked = drift.get("checked") is True
        DATA_DRIFTED.set(float(bool(drift.get("drifted"))) if checked else math.nan)
        flagged = poisoning.get("flagged")
        DATA_POISONED_MOVIES.set(len(flagged) if isinstance(flagged, list) else math.nan)
        DATA_FLAGGED_EVENTS.set(_number(poisoning.get("flagged_event_count")))
        DATA_QUARANTINED.set(_number(report.get("quarantined")))
        DATA_REFRESHED.set(_timestamp(report.get("created_at")))


def _section(record: dict[str, Any], key: str) -> dict[str, Any]:
    value = record.get(key)
    return value if isinstance(value, dict) else {}


def _read_report(path: Any) -> dict[str, Any]:
    if not isinstance(path, str):
        return {}
    try:
        report = json.loads(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        log.warning("unreadable refresh report %s: %s", path, exc)
        return {}
    return report if isinstance(report, dict) else {}
