"""The PostgreSQL event store (optional: `MOVIEREC_POSTGRES_DSN`), where a seed system kept
its events. Parquet stays the embedded default; with a DSN the DataPipeline also writes every
batch here, exactly once.

Exactly once: each event row is keyed by (source, position, sha256 of its line), and a batch's
rows and the source position after it are committed in ONE transaction, BEFORE the pipeline
commits the batch to its own state. A run killed before the transaction commits leaves no row;
a run killed after it but before the pipeline's own commit reads the batch again, and the
rows already there are skipped (`ON CONFLICT DO NOTHING`). Rejected lines go to
`movierec_quarantine` with their reason. `movierec_ratings` is a view: the latest rating of each
(user, movie), as the lake's ratings table.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd
import psycopg

from movierec.core.errors import DataValidationError
from movierec.data.events import ParsedBatch
from movierec.data.positions import SourcePosition, position_from_json
from movierec.data.sources import Batch

log = logging.getLogger(__name__)

_KEY = "source text NOT NULL, position text NOT NULL, line_sha text NOT NULL"
_PK = "PRIMARY KEY (source, position, line_sha)"
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS movierec_watches ({_KEY}, ts timestamptz NOT NULL,
    user_id bigint NOT NULL, movie_id text NOT NULL, minute integer NOT NULL, {_PK});
CREATE TABLE IF NOT EXISTS movierec_rates ({_KEY}, ts timestamptz NOT NULL,
    user_id bigint NOT NULL, movie_id text NOT NULL, rating smallint NOT NULL, {_PK});
CREATE TABLE IF NOT EXISTS movierec_recommendations ({_KEY}, ts timestamptz NOT NULL,
    user_id bigint NOT NULL, status smallint NOT NULL, items text NOT NULL,
    latency_ms bigint NOT NULL, {_PK});
CREATE TABLE IF NOT EXISTS movierec_quarantine ({_KEY}, line text NOT NULL,
    reason text NOT NULL, ingested_at timestamptz NOT NULL DEFAULT now(), {_PK});
CREATE TABLE IF NOT EXISTS movierec_ingest_positions (source text PRIMARY KEY,
    position jsonb NOT NULL, batches bigint NOT NULL, updated_at timestamptz NOT NULL);
CREATE OR REPLACE VIEW movierec_ratings AS
    SELECT DISTINCT ON (user_id, movie_id) user_id, movie_id, rating, ts AS timestamp
    FROM movierec_rates ORDER BY user_id, movie_id, ts DESC;
"""


@dataclass(frozen=True)
class _Table:
    name: str
    frame: str  # the ParsedBatch attribute
    columns: tuple[str, ...]


_TABLES = (
    _Table("movierec_watches", "watches", ("ts", "user_id", "movie_id", "minute")),
    _Table("movierec_rates", "rates", ("ts", "user_id", "movie_id", "rating")),
    _Table(
        "movierec_recommendations",
        "recommendations",
        ("ts", "user_id", "status", "items", "latency_ms"),
    ),
)


def _sha(line: str) -> str:
    return hashlib.sha256(line.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class PostgresStore:
    """Writes the DataPipeline's batches to PostgreSQL (an `EventSink`)."""

    name = "postgres"

    def __init__(self, dsn: str):
        try:
            self.conn = psycopg.connect(dsn, connect_timeout=10)
        except psycopg.Error as exc:
            raise DataValidationError(f"MOVIEREC_POSTGRES_DSN: cannot connect ({exc})") from None
        with self.conn.transaction():
            self.conn.execute(SCHEMA)

    def write_batch(self, source: str, batch: Batch, parsed: ParsedBatch) -> int:
        """The batch's events and the position after it, in one transaction. Returns the rows
        inserted (rows already there from an interrupted run are skipped)."""
        inserted = 0
        with self.conn.transaction(), self.conn.cursor() as cur:
            for table in _TABLES:
                frame = getattr(parsed, table.frame)
                rows = _rows(source, batch, frame, table.columns)
                inserted += _insert(
                    cur, table.name, ("source", "position", "line_sha", *table.columns), rows
                )
            rejects = [
                (source, batch.positions[r.line_no], _sha(r.line), r.line, r.reason)
                for r in parsed.rejects
            ]
            columns = ("source", "position", "line_sha", "line", "reason")
            inserted += _insert(cur, "movierec_quarantine", columns, rejects)
            cur.execute(
                "INSERT INTO movierec_ingest_positions AS p VALUES (%s, %s, 1, now()) "
                "ON CONFLICT (source) DO UPDATE SET position = EXCLUDED.position, "
                "batches = p.batches + 1, updated_at = now()",
                (source, json.dumps(batch.end.to_json())),
            )
        return inserted

    def position(self, source: str) -> SourcePosition | None:
        row = self.conn.execute(
            "SELECT position FROM movierec_ingest_positions WHERE source = %s", (source,)
        ).fetchone()
        return position_from_json(row[0], f"PostgreSQL position of {source}") if row else None

    def close(self) -> None:
        self.conn.close()


def _rows(
    source: str, batch: Batch, frame: pd.DataFrame, columns: Sequence[str]
) -> Iterable[tuple[object, ...]]:
    if frame.empty:
        return []
    line_nos = frame["line_no"].to_numpy()
    values = [frame[c].tolist() for c in columns]
    return (
        (source, batch.positions[n], _sha(batch.lines[n]), *row)
        for n, *row in zip(line_nos, *values, strict=True)
    )


def _insert(
    cur: psycopg.Cursor[tuple[object, ...]],
    table: str,
    columns: Sequence[str],
    rows: Iterable[tuple[object, ...]],
) -> int:
    """COPY into a temporary table, then insert what is not there yet."""
    cols = ", ".join(columns)
    cur.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS _in_{table} (LIKE {table} INCLUDING DEFAULTS) "
        "ON COMMIT DELETE ROWS"
    )
    with cur.copy(f"COPY _in_{table} ({cols}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    cur.execute(
        f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _in_{table} ON CONFLICT DO NOTHING"
    )
    return cur.rowcount
