"""The sections of `Settings`, one per stage of the life cycle, with every default.

A field is read from MOVIEREC_<FIELD NAME IN CAPITALS>, whatever its section; field names are
unique across sections. Validation is in `core.settings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from movierec.core.vocabulary import Arm, is_arm


def comma_list(value: str) -> tuple[str, ...]:
    """A comma-separated setting's items, stripped, empty ones left out: the one parser of
    `fold_in_arms`, `trusted_proxies` and the like."""
    return tuple(item.strip() for item in value.split(",") if item.strip())


@dataclass(frozen=True)
class PathSettings:
    """Where everything lives; relative paths are under `home`."""

    home: Path = field(default_factory=Path.cwd)
    data_dir: Path = Path("data")
    models_dir: Path = Path("models")
    logs_dir: Path = Path("logs")
    cache_dir: Path = Path(".cache")
    # served-log records that could not be written to logs/ (full disk, slow writer) wait
    # here to be read back: keep it on another file system than logs/ where you can
    spill_dir: Path = Path("data/spill")


@dataclass(frozen=True)
class DataSettings:
    """Datasets, the event source and the DataPipeline."""

    dataset: str = "ml-100k"
    grouplens_url: str = "https://files.grouplens.org/datasets/movielens"  # "" disables
    event_source: str = "data/events.log"  # a file path, or kafka:TOPIC
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_group: str = "movierec-ingest"
    kafka_session_timeout_ms: int = 6000
    ingest_batch_lines: int = 200_000
    replay_mean_minutes: float = 8.0
    exclude_flagged_events: bool = True
    postgres_dsn: str = ""  # also write the events to PostgreSQL ("" = Parquet only)
    # each user's recent history, written by the DataPipeline, read by the service per request
    online_store: str = "sqlite"  # sqlite (data/online_store.sqlite) | redis | none
    online_store_redis_url: str = "redis://127.0.0.1:6379/0"
    online_store_retention_days: float = 30.0  # a user's history is kept this long after a write
    # `movierec ingest --follow`
    ingest_flush_seconds: float = 0.5  # a partial batch waits at most this long for its commit
    ingest_refresh_seconds: float = 60.0  # tables and refresh report rebuilt at most this often
    ingest_compact_parts: int = 256  # committed part files merged into one per kind past this


@dataclass(frozen=True)
class TrainingSettings:
    """Training a model: seed, tuning budget, holdout, list length and re-ranking."""

    seed: int = 42
    tune_iterations: int = 12
    tune_seconds: float = 60.0
    tune_max_rows: int = 200_000  # above this many ratings, trials see a sample of users
    max_train_rows: int = 2_000_000
    n_threads: int = 2
    holdout_fraction: float = 0.1
    recommendations_k: int = 20
    longtail_min_share: float = 0.0
    genre_diversity: float = 0.0
    ranker_split: str = "random"  # how the ranker's split picks its labels (model.params)
    # where training's parallel work runs (model.training.cluster): "" trains in this process,
    # or on a LocalCluster from `dask_from_rows` ratings; tcp://HOST:8786 an existing cluster
    dask_scheduler: str = ""
    dask_from_rows: int = 2_000_000
    dask_workers: int = 0  # a LocalCluster's worker processes (0: the machine's cores)
    dask_worker_memory_gb: float = 4.0  # each worker's budget: partition sizes follow from it
    dask_xgb_from_rows: int = 1_000_000  # a booster with this many rows trains on xgboost.dask


@dataclass(frozen=True)
class RetrainSettings:
    """The cron retrainer's gate and promotion rule."""

    gate_min_new_users: int = 50
    gate_min_new_interactions: int = 100
    promote_rmse_margin: float = 1e-6
    promote_ndcg_tolerance: float = 0.01
    keep_rejected_models: int = 5
    mlflow_tracking_uri: str = ""  # "" = no MLflow; e.g. http://127.0.0.1:5000
    mlflow_experiment: str = "movierec"
    mlflow_model_name: str = "movierec"


@dataclass(frozen=True)
class ServingSettings:
    """The inference service."""

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    threads: int = 4
    release_salt: str = "movierec-release-1"
    routing_check_seconds: float = 1.0
    rate_limit_per_minute: int = 0  # 0: no limit
    # "": the limit is kept per gunicorn worker; redis://HOST:PORT/DB: shared by every worker
    # and replica that names the same Redis
    rate_limit_storage: str = ""
    # addresses or networks (comma-separated) whose X-Forwarded-For is believed; "" trusts none
    trusted_proxies: str = ""
    log_queue_size: int = 10_000
    online_store_timeout_ms: float = 50.0  # a request waits at most this long for the store
    # how often each worker reads the store's change feed (which users have new events)
    online_store_poll_ms: float = 100.0
    # arms that fold a user's new events in (comma-separated; "": every arm answers from the
    # precomputed lists), and the lists each worker keeps per (user, history)
    fold_in_arms: str = "stable,canary"
    fold_in_cache_users: int = 10_000
    # users whose lists each worker folds in when their events arrive, off the request path
    # (serve.live.warmer): the most waiting and the most kept; 0: only on the request
    fold_in_warm_users: int = 10_000
    # while `movierec fold-in` runs, how long a worker waits for its list of a changed user
    # before folding the user in itself (serve.live.shared_lists); 0: never waits
    fold_in_defer_ms: float = 500.0
    # served-log records kept in memory while the log cannot be written (then: the spill file)
    log_backlog_size: int = 100_000

    @property
    def fold_in_arm_set(self) -> frozenset[Arm]:
        """The arms that fold users in (`fold_in_arms`, validated to name arms)."""
        return frozenset(a for a in comma_list(self.fold_in_arms) if is_arm(a))

    @property
    def trusted_proxy_list(self) -> tuple[str, ...]:
        """`trusted_proxies`' addresses and networks (validated to parse)."""
        return comma_list(self.trusted_proxies)


@dataclass(frozen=True)
class ReleaseSettings:
    """Online evaluation, the shadow stage and the canary's ramp.

    `release_rule` picks the decision rule: "noninferiority" (per-user statistics and an
    always-valid interval of the relative CTR lift against `noninferiority_margin`) or
    "design" (the design's first rule: CTR >= `ctr_min_abs` and >= `ctr_min_rel` of stable's).
    """

    release_rule: str = "noninferiority"
    click_window_minutes: float = 30.0
    ctr_min_abs: float = 0.10
    ctr_min_rel: float = 0.70
    satisfaction_low: float = 0.85
    satisfaction_high: float = 1.15
    min_samples_per_arm: int = 200  # mature requests: the design rule's, and a step's dwell
    max_error_rate: float = 0.01
    max_p99_latency_ms: float = 600.0
    ramp_step_pct: int = 10
    initial_canary_pct: int = 10
    noninferiority_margin: float = 0.10  # the largest relative CTR loss tolerated
    release_alpha: float = 0.05  # error rate of the always-valid intervals (two-sided)
    release_power: float = 0.80  # for the minimum users per arm
    min_users_per_arm: int = 50  # below this the normal approximation is not trusted
    max_step_hours: float = 24.0  # an inconclusive step aborts after this long
    shadow_sample_pct: int = 20  # 0: a retrained candidate starts as a canary, no shadow
    shadow_min_ratio: float = 0.1  # shadow gate: candidate's hits / stable's, same requests
    completed_viewing_minutes: float = 60.0  # a viewing this long counts as completed


SECTIONS: dict[str, type] = {
    "paths": PathSettings,
    "data": DataSettings,
    "training": TrainingSettings,
    "retraining": RetrainSettings,
    "serving": ServingSettings,
    "release": ReleaseSettings,
}
