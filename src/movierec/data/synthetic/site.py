"""`movierec replay --synthetic`: the site's log and the `synthetic` dataset's tables."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from movierec.core.errors import DataValidationError
from movierec.core.files import atomic_write_json, fsync_dir, sha256_file
from movierec.core.settings import Settings
from movierec.data.lake import LakeState, PendingCounts, parts_dir, write_part
from movierec.data.movielens import dataset_dir, fetch, load_tables, swap_in
from movierec.data.replay import LineChunk, write_lines
from movierec.data.synthetic.population import Plan, SyntheticSpec, make_plan, spill, users_table
from movierec.data.synthetic.shape import SiteShape
from movierec.data.synthetic.timeline import Events, bucket_events, lake_parts, text_of, utc

log = logging.getLogger(__name__)

DATASET = "synthetic"
SHAPE_SOURCE = "ml-1m"


@dataclass
class SyntheticResult:
    out: str
    users: int
    movies: int
    interactions: int
    ratings: int = 0
    lines: int = 0
    first_ts: str | None = None
    last_ts: str | None = None
    dataset_path: str = ""
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return self.__dict__.copy()


# ---- the job ---------------------------------------------------------------------------------


def generate(
    settings: Settings,
    site: SyntheticSpec,
    out: str,
    shape: SiteShape | None = None,
    *,
    to_lake: bool = False,
) -> SyntheticResult:
    """Append the site's log to `out` (a path or kafka:TOPIC) and write the `synthetic`
    dataset's tables (replacing an earlier one). The shape is ml-1m's unless given.

    `to_lake`: instead of the log, the DataPipeline's committed parts in an empty lake, the
    columns `ingest` would write for that log (a shortcut for training benchmarks where
    ingesting hundreds of millions of lines is not what is measured; the online store and
    the other sinks are not fed)."""
    site.check()
    # Shape: taken from the real data
    if shape is None:
        fetch(settings, SHAPE_SOURCE)
        shape = SiteShape.of(load_tables(settings, SHAPE_SOURCE))
    plan = make_plan(shape, site)
    started = time.perf_counter()
    result = SyntheticResult(out, site.users, site.movies, 0)
    settings.data_path.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".synthetic.", dir=settings.data_path))
    try:
        # Interactions: a chunk of users at a time, spilled by time bucket
        files = spill(plan, work)
        result.interactions = sum(int(at[-1]) for _, at in files)
        # Events: a time bucket at a time, to the log and the ratings table
        tables = work / "tables"
        tables.mkdir()
        with pq.ParquetWriter(tables / "ratings.parquet", _RATINGS_SCHEMA) as ratings:
            buckets = _rated_buckets(plan, files, ratings, result)
            if to_lake:
                result.lines = _to_lake(settings, plan, buckets)
            else:
                chunks = (LineChunk(text_of(plan, ev), ev.user) for ev in buckets)
                result.lines = write_lines(settings, out, chunks)
        # Dataset: users and movies beside the ratings, then swapped into place
        users = users_table(shape, site.users, np.random.default_rng([site.seed, 3]))
        users.to_parquet(tables / "users.parquet", index=False)
        plan.catalog.table.to_parquet(tables / "movies.parquet", index=False)
        result.dataset_path = str(_install(settings, tables, site, result))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result.seconds = time.perf_counter() - started
    log.info("synthetic site: %s", result.summary())
    return result


_RATINGS_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("movie_id", pa.large_string()),
        ("rating", pa.int8()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
    ]
)


def _rated_buckets(
    plan: Plan,
    files: list[tuple[Path, np.ndarray]],
    ratings: pq.ParquetWriter,
    result: SyntheticResult,
) -> Iterator[Events]:
    """Each bucket's events, once its ratings are in the ratings table."""
    for ev in bucket_events(plan, files):
        if ev.ts.size == 0:
            continue
        rate = ev.kind == 2
        ratings.write_table(
            pa.table(
                {
                    "user_id": ev.user[rate],
                    "movie_id": plan.catalog.slugs.take(ev.movie[rate]).cast(pa.large_string()),
                    "rating": ev.value[rate].astype(np.int8),
                    "timestamp": utc(ev.ts[rate]),
                },
                schema=_RATINGS_SCHEMA,
            )
        )
        result.ratings += int(rate.sum())
        result.first_ts = result.first_ts or str(ev.ts[0].astype("datetime64[s]"))
        result.last_ts = str(ev.ts[-1].astype("datetime64[s]"))
        yield ev


def _to_lake(settings: Settings, plan: Plan, buckets: Iterator[Events]) -> int:
    """Each bucket's parts, then the state that commits them all; returns the events."""
    if LakeState.load(settings).parts:
        raise DataValidationError(
            f"{settings.lake_path} already holds committed parts: the synthetic site is written "
            "into an empty lake (move this one away)"
        )
    names, n, seq = [], 0, 0
    quarantine = pd.DataFrame(columns=["source", "position", "line", "reason", "ingested_at"])
    for seq, ev in enumerate(buckets, start=1):
        frames = {k: t.to_pandas() for k, t in lake_parts(plan, ev).items()}
        for kind, frame in {**frames, "quarantine": quarantine}.items():
            names.append(f"{seq - 1:08d}-{kind}.parquet")
            write_part(settings, names[-1], frame)
        n += ev.ts.size
    fsync_dir(parts_dir(settings))
    LakeState(seq=seq, parts=names, pending=PendingCounts(lines=n, accepted=n)).save(settings)
    return n


def _install(
    settings: Settings, tables: Path, site: SyntheticSpec, result: SyntheticResult
) -> Path:
    """The tables as the `synthetic` dataset, with what made them in `sources.json`."""
    digests = {t: sha256_file(tables / f"{t}.parquet") for t in ("users", "movies", "ratings")}
    spec = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in site.__dict__.items()}
    atomic_write_json(
        tables / "sources.json",
        {
            "dataset": DATASET,
            "origin": f"synthetic, shaped by {SHAPE_SOURCE}",
            "fetched_at": datetime.now(UTC).isoformat(),
            "sources": {},
            "spec": spec,
            "tables": digests,
            "counts": {
                "users": site.users,
                "movies": site.movies,
                "rated_movies": -1,
                "ratings": result.ratings,
                "interactions": result.interactions,
                "lines": result.lines,
            },
        },
    )
    target = dataset_dir(settings, DATASET)
    swap_in(tables, target)
    return target
