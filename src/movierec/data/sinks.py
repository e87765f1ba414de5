"""Where the DataPipeline writes each batch besides the lake's Parquet parts: optional event
sinks, each called with the batch before the pipeline commits it (so a sink that is written
and then loses the pipeline's commit sees the batch again, and must be idempotent)."""

from __future__ import annotations

from typing import Protocol

from movierec.core.settings import Settings
from movierec.data.events import ParsedBatch
from movierec.data.online_store import open_online_store
from movierec.data.postgres import PostgresStore
from movierec.data.sources import Batch


class EventSink(Protocol):
    name: str

    def write_batch(self, source: str, batch: Batch, parsed: ParsedBatch) -> int: ...

    def close(self) -> None: ...


def open_sinks(settings: Settings) -> list[EventSink]:
    """The sinks the settings ask for (by default the online store in SQLite)."""
    sinks: list[EventSink] = []
    online = open_online_store(settings)
    if online is not None:
        sinks.append(online)
    if settings.data.postgres_dsn:
        sinks.append(PostgresStore(settings.data.postgres_dsn))
    return sinks
