"""One frozen Settings object, built from MOVIEREC_* environment variables and validated once."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from movierec.errors import ConfigError

ENV_PREFIX = "MOVIEREC_"
DATASETS = ("ml-100k", "ml-1m")


@dataclass(frozen=True)
class Settings:
    """Every knob of the system. Paths are relative to `home` unless given absolute.

    Each field is read from the environment variable MOVIEREC_<FIELD NAME IN CAPITALS>.
    """

    # where everything lives
    home: Path = field(default_factory=Path.cwd)
    data_dir: Path = Path("data")
    models_dir: Path = Path("models")
    logs_dir: Path = Path("logs")
    cache_dir: Path = Path(".cache")

    # data
    dataset: str = "ml-100k"
    grouplens_url: str = "https://files.grouplens.org/datasets/movielens"  # "" disables
    event_source: str = "data/events.log"  # a file path, or kafka:TOPIC
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_group: str = "movierec-ingest"
    kafka_session_timeout_ms: int = 6000
    ingest_batch_lines: int = 200_000
    replay_mean_minutes: float = 8.0
    ingest_crash_at: str = ""  # test hook: "after-parts" or "after-commit"
    exclude_flagged_events: bool = True

    # model training
    seed: int = 42
    tune_iterations: int = 12
    tune_seconds: float = 60.0
    max_train_rows: int = 2_000_000
    n_threads: int = 2
    holdout_fraction: float = 0.1
    recommendations_k: int = 20
    longtail_min_share: float = 0.0
    genre_diversity: float = 0.0

    # retraining gate and promotion
    gate_min_new_users: int = 50
    gate_min_new_interactions: int = 100
    promote_rmse_margin: float = 1e-6
    promote_ndcg_tolerance: float = 0.01
    keep_rejected_models: int = 5
    retrain_crash_at: str = ""  # test hook: a step name where the retrainer kills itself

    # serving
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    threads: int = 4
    release_salt: str = "movierec-release-1"
    routing_check_seconds: float = 1.0
    rate_limit_per_minute: int = 0  # 0: no limit
    log_queue_size: int = 10_000

    # online evaluation and release
    click_window_minutes: float = 30.0
    ctr_min_abs: float = 0.10
    ctr_min_rel: float = 0.70
    satisfaction_low: float = 0.85
    satisfaction_high: float = 1.15
    min_samples_per_arm: int = 200
    max_error_rate: float = 0.01
    max_p99_latency_ms: float = 600.0
    ramp_step_pct: int = 10
    initial_canary_pct: int = 10

    def __post_init__(self) -> None:
        self._validate()

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from MOVIEREC_* variables (and explicit overrides, which win)."""
        env = os.environ if environ is None else environ
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = ENV_PREFIX + f.name.upper()
            if key in env:
                values[f.name] = _coerce(f.name, env[key], hints[f.name])
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # ---- derived paths ------------------------------------------------------------------
    def path(self, p: Path | str) -> Path:
        """Resolve a path relative to `home`."""
        p = Path(p)
        return p if p.is_absolute() else self.home / p

    @property
    def data_path(self) -> Path:
        return self.path(self.data_dir)

    @property
    def models_path(self) -> Path:
        return self.path(self.models_dir)

    @property
    def logs_path(self) -> Path:
        return self.path(self.logs_dir)

    @property
    def cache_path(self) -> Path:
        return self.path(self.cache_dir)

    @property
    def lake_path(self) -> Path:
        """Parquet tables materialized by the DataPipeline."""
        return self.data_path / "lake"

    @property
    def datasets_path(self) -> Path:
        """Canonical MovieLens tables, one folder per dataset."""
        return self.data_path / "movielens"

    @property
    def holdout_file(self) -> Path:
        return self.data_path / "offline_eval_data.parquet"

    @property
    def routing_file(self) -> Path:
        return self.models_path / "routing.json"

    @property
    def routing_history_file(self) -> Path:
        return self.models_path / "routing_history.jsonl"

    @property
    def retrain_state_file(self) -> Path:
        return self.data_path / "retrain_state.json"

    @property
    def served_log_file(self) -> Path:
        return self.logs_path / "served.jsonl"

    @property
    def kafka_topic(self) -> str | None:
        """The topic when the event source is kafka:TOPIC, otherwise None."""
        return self.event_source[6:] if self.event_source.startswith("kafka:") else None

    # ---- validation ---------------------------------------------------------------------
    def _validate(self) -> None:
        object.__setattr__(self, "home", Path(self.home).resolve())
        for name in ("data_dir", "models_dir", "logs_dir", "cache_dir"):
            object.__setattr__(self, name, Path(getattr(self, name)))
        if self.dataset not in DATASETS:
            raise ConfigError(f"MOVIEREC_DATASET={self.dataset!r}: expected one of {DATASETS}")
        if not self.event_source:
            raise ConfigError("MOVIEREC_EVENT_SOURCE is empty: give a file path or kafka:TOPIC")
        if self.event_source.startswith("kafka:") and not self.event_source[6:]:
            raise ConfigError("MOVIEREC_EVENT_SOURCE='kafka:' names no topic")
        for name in ("port",):
            v = getattr(self, name)
            if not 0 < v < 65536:
                raise ConfigError(f"MOVIEREC_{name.upper()}={v}: expected 1..65535")
        for name in ("initial_canary_pct", "ramp_step_pct"):
            v = getattr(self, name)
            if not 0 <= v <= 100:
                raise ConfigError(f"MOVIEREC_{name.upper()}={v}: expected 0..100")
        for name in (
            "holdout_fraction",
            "ctr_min_abs",
            "ctr_min_rel",
            "max_error_rate",
            "longtail_min_share",
            "genre_diversity",
        ):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"MOVIEREC_{name.upper()}={v}: expected a fraction in [0, 1]")
        if not 0 < self.satisfaction_low <= 1.0 <= self.satisfaction_high:
            raise ConfigError(
                "satisfaction range must contain 1.0: "
                f"[{self.satisfaction_low}, {self.satisfaction_high}]"
            )
        for name in (
            "workers",
            "threads",
            "n_threads",
            "tune_iterations",
            "max_train_rows",
            "ingest_batch_lines",
            "recommendations_k",
            "min_samples_per_arm",
            "log_queue_size",
        ):
            v = getattr(self, name)
            if v < 1:
                raise ConfigError(f"MOVIEREC_{name.upper()}={v}: expected at least 1")
        for name in (
            "gate_min_new_users",
            "gate_min_new_interactions",
            "keep_rejected_models",
            "rate_limit_per_minute",
        ):
            v = getattr(self, name)
            if v < 0:
                raise ConfigError(f"MOVIEREC_{name.upper()}={v}: expected a count >= 0")
        for name in ("tune_seconds", "click_window_minutes", "routing_check_seconds"):
            v = getattr(self, name)
            if v <= 0:
                raise ConfigError(f"MOVIEREC_{name.upper()}={v}: expected a positive number")


def _coerce(name: str, raw: str, typ: Any) -> Any:
    """Turn an environment string into the field's type, or say which variable is wrong."""
    key = ENV_PREFIX + name.upper()
    try:
        if typ is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if typ is int:
            return int(raw)
        if typ is float:
            return float(raw)
        if typ is Path:
            return Path(raw)
        return raw
    except ValueError:
        raise ConfigError(f"{key}={raw!r}: expected {getattr(typ, '__name__', typ)}") from None
