"""The online store: each user's history since the model's training cutoff, written by the
DataPipeline as it ingests (an `EventSink`) and read by every gunicorn worker per request.

`online_store` picks it: `sqlite` (the default, `data/online_store.sqlite` in WAL mode, no
server), `redis` (`online_store_redis_url`: several replicas or machines) or `none`. Both keep
the same rows (`data.history`) and raise `OnlineStoreUnavailable` when they cannot answer.
"""

from __future__ import annotations

from movierec.core.settings import Settings
from movierec.data.history import HistoryStore
from movierec.data.online_redis import RedisHistoryStore
from movierec.data.online_sqlite import SqliteHistoryStore


def open_online_store(settings: Settings) -> HistoryStore | None:
    """The store the settings name (None for `none`). Opening connects nothing: the first
    write or read does."""
    kind = settings.data.online_store
    retention = settings.data.online_store_retention_days
    timeout = settings.serving.online_store_timeout_ms
    if kind == "sqlite":
        return SqliteHistoryStore(
            settings.online_store_file, retention_days=retention, timeout_ms=timeout
        )
    if kind == "redis":
        return RedisHistoryStore(
            settings.data.online_store_redis_url, retention_days=retention, timeout_ms=timeout
        )
    return None
