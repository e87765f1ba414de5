"""What each setting accepts: `Settings` calls `validate` once, when it is built.

Every refusal is a `ConfigError` naming the variable (MOVIEREC_<FIELD NAME>) and its value.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from movierec.core.errors import ConfigError
from movierec.core.sections import comma_list
from movierec.core.vocabulary import ARMS

ENV_PREFIX = "MOVIEREC_"
DATASETS = ("ml-100k", "ml-1m", "synthetic")
ONLINE_STORES = ("sqlite", "redis", "none")
RANKER_SPLITS = ("random", "user_latest", "global_time")  # the ranker's earlier/later split
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
DASK_SCHEMES = ("tcp://", "tls://", "inproc://")

_FRACTIONS = (
    "holdout_fraction",
    "ctr_min_abs",
    "ctr_min_rel",
    "max_error_rate",
    "longtail_min_share",
    "genre_diversity",
    "shadow_min_ratio",
)
_AT_LEAST_ONE = (
    "workers",
    "threads",
    "n_threads",
    "tune_iterations",
    "tune_max_rows",
    "max_train_rows",
    "ingest_batch_lines",
    "recommendations_k",
    "min_samples_per_arm",
    "log_queue_size",
    "ingest_compact_parts",
    "log_backlog_size",
)
_AT_LEAST_TWO = ("min_users_per_arm",)
_OPEN_FRACTIONS = ("noninferiority_margin", "release_alpha", "release_power")
_COUNTS = (
    "gate_min_new_users",
    "gate_min_new_interactions",
    "keep_rejected_models",
    "fold_in_cache_users",
    "fold_in_warm_users",
    "dask_from_rows",
    "dask_workers",
    "dask_xgb_from_rows",
)
_POSITIVE = (
    "tune_seconds",
    "click_window_minutes",
    "routing_check_seconds",
    "online_store_retention_days",
    "ingest_flush_seconds",
    "ingest_refresh_seconds",
    "online_store_timeout_ms",
    "online_store_poll_ms",
    "max_step_hours",
    "completed_viewing_minutes",
    "dask_worker_memory_gb",
)
_PERCENTS = ("initial_canary_pct", "ramp_step_pct", "shadow_sample_pct")
RELEASE_RULES = ("noninferiority", "design")


def validate(values: Mapping[str, object]) -> None:
    """Every value that cannot work is refused here, with the variable that holds it
    (`values`: every setting by its field name)."""
    _check_choices(values)
    checks = (
        (_FRACTIONS, lambda v: 0.0 <= v <= 1.0, "a fraction in [0, 1]"),
        (_AT_LEAST_ONE, lambda v: v >= 1, "at least 1"),
        (_AT_LEAST_TWO, lambda v: v >= 2, "at least 2"),
        (_OPEN_FRACTIONS, lambda v: 0.0 < v < 1.0, "a fraction in (0, 1)"),
        ((*_COUNTS, "rate_limit_per_minute"), lambda v: v >= 0, "a count >= 0"),
        (("fold_in_defer_ms",), lambda v: v >= 0, "a number >= 0"),
        (_POSITIVE, lambda v: v > 0, "a positive number"),
        (_PERCENTS, lambda v: 0 <= v <= 100, "0..100"),
        (("port",), lambda v: 0 < v < 65536, "1..65535"),
    )
    for names, ok, expected in checks:
        for name in names:
            if not ok(_number(values, name)):
                raise ConfigError(f"{ENV_PREFIX}{name.upper()}={values[name]}: expected {expected}")
    low, high = _number(values, "satisfaction_low"), _number(values, "satisfaction_high")
    if not 0 < low <= 1.0 <= high:
        raise ConfigError(f"satisfaction range must contain 1.0: [{low}, {high}]")


def _check_choices(values: Mapping[str, object]) -> None:
    if values["release_rule"] not in RELEASE_RULES:
        raise ConfigError(
            f"MOVIEREC_RELEASE_RULE={values['release_rule']!r}: expected one of {RELEASE_RULES}"
        )
    if values["ranker_split"] not in RANKER_SPLITS:
        raise ConfigError(
            f"MOVIEREC_RANKER_SPLIT={values['ranker_split']!r}: expected one of {RANKER_SPLITS}"
        )
    if values["dataset"] not in DATASETS:
        raise ConfigError(f"MOVIEREC_DATASET={values['dataset']!r}: expected one of {DATASETS}")
    _check_serving_choices(values)
    scheduler = _text(values, "dask_scheduler")
    if scheduler and not scheduler.startswith(DASK_SCHEMES):
        raise ConfigError(
            f"MOVIEREC_DASK_SCHEDULER={scheduler!r}: expected {DASK_SCHEMES}HOST:PORT"
        )
    source = _text(values, "event_source")
    if not source:
        raise ConfigError("MOVIEREC_EVENT_SOURCE is empty: give a file path or kafka:TOPIC")
    if source.startswith("kafka:") and not source[6:]:
        raise ConfigError("MOVIEREC_EVENT_SOURCE='kafka:' names no topic")
    if values["online_store"] not in ONLINE_STORES:
        raise ConfigError(
            f"MOVIEREC_ONLINE_STORE={values['online_store']!r}: expected one of {ONLINE_STORES}"
        )
    if not set(comma_list(_text(values, "fold_in_arms"))) <= set(ARMS):
        raise ConfigError(f"MOVIEREC_FOLD_IN_ARMS={values['fold_in_arms']!r}: arms are {ARMS}")
    url = _text(values, "online_store_redis_url")
    if values["online_store"] == "redis" and not url.startswith(REDIS_SCHEMES):
        raise ConfigError(f"MOVIEREC_ONLINE_STORE_REDIS_URL={url!r}: expected {REDIS_SCHEMES}")


def _check_serving_choices(values: Mapping[str, object]) -> None:
    storage = _text(values, "rate_limit_storage")
    if storage and not storage.startswith(("redis://", "rediss://", "redis+unix://")):
        raise ConfigError(
            f"MOVIEREC_RATE_LIMIT_STORAGE={storage!r}: expected empty (per worker) or a Redis "
            "URL (redis://HOST:PORT/DB)"
        )
    for item in comma_list(_text(values, "trusted_proxies")):
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(
                f"MOVIEREC_TRUSTED_PROXIES: {item!r} is not an address or network"
            ) from None


def _number(values: Mapping[str, object], name: str) -> float:
    value = values[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}={value!r}: expected a number")
    return value


def _text(values: Mapping[str, object], name: str) -> str:
    value = values[name]
    if not isinstance(value, str):
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}={value!r}: expected text")
    return value
