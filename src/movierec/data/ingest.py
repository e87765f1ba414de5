"""The DataPipeline (`movierec ingest`): event lines in, validated and de-duplicated Parquet out.

Per batch of lines read from the source: parse (`events.parse_lines`), write the accepted
events and the rejected lines as part files under `data/lake/parts/`, then commit the batch by
replacing `data/lake/_state.json` atomically (the source position after the batch and the
list of committed parts). Only then is a Kafka offset committed to the broker. A run killed
at any moment therefore resumes exactly: parts not listed in the state are leftovers of a
dead run and are deleted; lines after the saved position are read again.

After the batches the lake's tables are rebuilt from every committed part (`data.lake`), and
a refresh report is written (`data.refresh`). Rejected lines go to `data/quarantine.jsonl`
with source, position and reason.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from movierec.core.faults import fault_point
from movierec.core.files import atomic_write_json, exclusive_lock, fsync_dir
from movierec.core.progress import Progress
from movierec.core.settings import Settings
from movierec.data.events import ParsedBatch, parse_lines
from movierec.data.lake import (
    lake_totals,
    materialize,
    parts_dir,
    read_state,
    read_table,
    state_file,
)
from movierec.data.refresh import (
    drift_section,
    new_rows,
    poisoning_section,
    refresh_report,
    write_report,
)
from movierec.data.sinks import open_sinks
from movierec.data.sources import Batch, open_source

log = logging.getLogger(__name__)

KINDS = ("watches", "rates", "recommendations", "quarantine")


@dataclass
class IngestResult:
    source: str
    lines: int = 0
    accepted: int = 0
    quarantined: int = 0
    batches: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    deltas: dict[str, int] = field(default_factory=dict)
    report_path: str = ""
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return self.__dict__.copy()


def ingest(settings: Settings, source: str | None = None) -> IngestResult:
    """Read what is new in the source, commit it batch by batch, rebuild the tables."""
    spec = source or settings.data.event_source
    with exclusive_lock(settings.lake_path / ".ingest.lock", wait=True):
        return _ingest_locked(settings, spec)


def _source_key(spec: str, settings: Settings) -> str:
    return spec if spec.startswith("kafka:") else str(settings.path(spec).resolve())


def _ingest_locked(settings: Settings, spec: str) -> IngestResult:
    start = time.perf_counter()
    state = read_state(settings)
    key = _source_key(spec, settings)
    before = dict(state.get("positions", {}).get(key, {}))
    result = IngestResult(source=spec)
    reasons: dict[str, int] = {}
    # Batches: parts written, then the position committed
    _consume(settings, spec, key, state, result, reasons)
    # Tables: rebuilt from every committed part
    old_ratings = read_table(settings, "ratings")
    tables = materialize(settings, state)
    previous = dict(state.get("totals", {}))
    result.totals = lake_totals(tables)
    result.deltas = {k: v - int(previous.get(k, 0)) for k, v in result.totals.items()}
    # Report: totals, quarantine, drift and poisoning of the new ratings
    after = state.get("positions", {}).get(key, {})
    report = refresh_report(result.summary(), reasons, before, after)
    new_ratings = new_rows(old_ratings, tables.ratings)
    report["drift"] = drift_section(settings, old_ratings, new_ratings)
    report["poisoning"] = poisoning_section(settings, old_ratings, new_ratings, tables)
    result.seconds = time.perf_counter() - start
    result.report_path = str(write_report(settings, report, result.seconds))
    # State: totals and the report's path
    state["totals"] = result.totals
    state["last_report"] = result.report_path
    atomic_write_json(state_file(settings), state)
    log.info("ingested %d lines (%d quarantined) from %s", result.lines, result.quarantined, spec)
    return result


def _consume(
    settings: Settings,
    spec: str,
    key: str,
    state: dict[str, Any],
    result: IngestResult,
    reasons: dict[str, int],
) -> None:
    """Read the source from its saved position; commit each batch once its parts are durable."""
    positions: dict[str, Any] = state.setdefault("positions", {})
    _remove_uncommitted_parts(settings, state)
    src = open_source(settings, spec, positions.get(key, {}))
    sinks = open_sinks(settings)
    bar = Progress(f"ingest {spec}", unit="lines")
    try:
        for batch in src.batches(settings.data.ingest_batch_lines):
            seq = int(state.get("seq", 0))
            parsed = parse_lines(batch.lines)
            names = _write_parts(settings, seq, batch, parsed, spec, reasons, result)
            fault_point("ingest.after-parts")
            for sink in sinks:  # before our own commit: a sink sees a batch at least once
                sink.write_batch(key, batch, parsed)
                fault_point(f"ingest.after-{sink.name}")
            state["seq"] = seq + 1
            state.setdefault("parts", []).extend(names)
            positions[key] = batch.end
            atomic_write_json(state_file(settings), state)
            fault_point("ingest.after-commit")
            src.commit(batch.end)
            result.batches += 1
            bar.update(len(batch.lines))
    finally:
        bar.close()
        for sink in sinks:
            sink.close()
        src.close()


def _remove_uncommitted_parts(settings: Settings, state: dict[str, Any]) -> None:
    committed = set(state.get("parts", []))
    folder = parts_dir(settings)
    if folder.exists():
        for p in folder.iterdir():
            if p.name not in committed:
                log.info("removing %s, left by an interrupted run", p.name)
                p.unlink()


def _write_parts(
    settings: Settings,
    seq: int,
    batch: Batch,
    parsed: ParsedBatch,
    spec: str,
    reasons: dict[str, int],
    result: IngestResult,
) -> list[str]:
    folder = parts_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).isoformat()
    quarantine = pd.DataFrame(
        {
            "source": spec,
            "position": [batch.positions[r.line_no] for r in parsed.rejects],
            "line": [r.line for r in parsed.rejects],
            "reason": [r.reason for r in parsed.rejects],
            "ingested_at": now,
        },
        columns=["source", "position", "line", "reason", "ingested_at"],
    )
    frames = {
        "watches": parsed.watches,
        "rates": parsed.rates,
        "recommendations": parsed.recommendations,
        "quarantine": quarantine,
    }
    names = []
    for kind, frame in frames.items():
        if kind != "quarantine":
            frame = frame.drop(columns="line_no")
        name = f"{seq:08d}-{kind}.parquet"
        tmp = folder / f".{name}.tmp"
        frame.to_parquet(tmp, index=False)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, folder / name)
        names.append(name)
    fsync_dir(folder)
    for r in parsed.rejects:
        reason = r.reason.split(" '")[0].split(" (")[0]
        reasons[reason] = reasons.get(reason, 0) + 1
    result.lines += len(batch.lines)
    result.accepted += parsed.accepted
    result.quarantined += len(parsed.rejects)
    return names
