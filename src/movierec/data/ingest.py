"""The DataPipeline (`movierec ingest`): event lines in, validated and de-duplicated Parquet out.

Per batch of lines read from the source: parse (`events.parse_lines`), then, holding the
lake's lock, write the accepted events and the rejected lines as part files under
`data/lake/parts/`, give the batch to the event sinks (the online store, PostgreSQL), and
commit it by replacing `data/lake/_state.json` atomically (the source position after the batch
and the list of committed parts). Only then is a Kafka offset committed to the broker. A run
killed at any moment therefore resumes exactly: parts not listed in the state are leftovers of
a dead run and are deleted; lines after the saved position are read again.

The lock is held per batch, not per run, so several pipelines can share one lake: followers
of one Kafka consumer group each reading their partitions, or a follower and the retrainer's
one-shot run. The state is the reference position: a batch keeps only the lines past it
(`sources.unread`), so a line two of them read is committed once.

`ingest` reads what is new and stops. `ingest(..., follow=Follow(stop))` (`ingest --follow`)
keeps reading, committing within about `ingest_flush_seconds` of an event's arrival. After the
batches (and, when following, every `ingest_refresh_seconds`, in a thread beside the batches)
the lake's tables are rebuilt from every committed part (`data.lake`, which first merges the
parts when there are many) and a refresh report is written (`data.refresh`). Rejected lines go
to `data/quarantine.jsonl` with source, position and reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from movierec.core.errors import OnlineStoreUnavailable
from movierec.core.faults import fault_point
from movierec.core.files import exclusive_lock, fsync_dir
from movierec.core.progress import Progress
from movierec.core.settings import Settings
from movierec.data.events import ParsedBatch, parse_lines
from movierec.data.lake import (
    LakeState,
    PendingCounts,
    Refreshed,
    compact_parts,
    lake_totals,
    materialize,
    parts_dir,
    read_table,
    write_part,
)
from movierec.data.positions import SourcePosition
from movierec.data.refresh import (
    drift_section,
    new_rows,
    poisoning_section,
    refresh_report,
    unknown_titles_section,
    write_report,
)
from movierec.data.sinks import EventSink, open_sinks
from movierec.data.sources import Batch, Follow, open_source, unread

log = logging.getLogger(__name__)

SINK_RETRY_SECONDS = 2.0  # a follower whose sink is down tries the batch again this often


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

    def summary(self) -> dict[str, object]:
        return self.__dict__.copy()


def ingest(
    settings: Settings, source: str | None = None, follow: Follow | None = None
) -> IngestResult:
    """Read what is new in the source, commit it batch by batch, rebuild the tables. With
    `follow`, keep reading until `follow.stop` is set, rebuilding the tables periodically."""
    start = time.perf_counter()
    spec = source or settings.data.event_source
    key = _source_key(spec, settings)
    result = IngestResult(source=spec)
    with _lake_lock(settings):
        _remove_uncommitted_parts(settings, LakeState.load(settings))
    # Batches: parts, sinks, then the position, one batch at a time under the lake's lock
    while True:
        try:
            _consume(settings, spec, key, result, follow)
            break
        except OnlineStoreUnavailable as exc:
            if follow is None:
                raise
            log.warning(
                "%s; trying again in %.0f s from the committed position", exc, SINK_RETRY_SECONDS
            )
            if follow.stop.wait(SINK_RETRY_SECONDS):
                break
    # Tables: rebuilt from every committed part, with the refresh report
    _refresh(settings, spec, key, result)
    result.seconds = time.perf_counter() - start
    log.info("ingested %d lines (%d quarantined) from %s", result.lines, result.quarantined, spec)
    return result


def _source_key(spec: str, settings: Settings) -> str:
    return spec if spec.startswith("kafka:") else str(settings.path(spec).resolve())


def _lake_lock(settings: Settings) -> AbstractContextManager[None]:
    return exclusive_lock(settings.lake_path / ".ingest.lock", wait=True)


def _consume(
    settings: Settings, spec: str, key: str, result: IngestResult, follow: Follow | None
) -> None:
    """Read the source from the committed position; commit each batch once it is durable."""
    src = open_source(settings, spec, lambda: LakeState.load(settings).positions.get(key))
    sinks = open_sinks(settings)
    bar = Progress(f"ingest {spec}", unit="lines")
    refresher: threading.Thread | None = None
    try:
        for batch in src.batches(settings.data.ingest_batch_lines, follow):
            if batch.lines:
                end = _commit(settings, spec, key, batch, sinks, result)
                fault_point("ingest.after-commit")
                src.commit(end)
                bar.update(len(batch.lines))
            if follow is not None:
                follow.beat()
                if (refresher is None or not refresher.is_alive()) and _refresh_due(settings):
                    refresher = _refresh_beside(settings, spec, key, result)
    finally:
        if refresher is not None:
            refresher.join()
        bar.close()
        for sink in sinks:
            sink.close()
        src.close()


def _refresh_beside(
    settings: Settings, spec: str, key: str, result: IngestResult
) -> threading.Thread:
    """A follower's periodic refresh, in a thread of its own: batches go on committing."""

    def run() -> None:
        try:
            _refresh(settings, spec, key, result)
        except Exception:  # the follower goes on; the next refresh that is due tries again
            log.exception("refreshing the lake's tables failed")

    thread = threading.Thread(target=run, name="lake-refresh", daemon=True)
    thread.start()
    return thread


def _commit(
    settings: Settings,
    spec: str,
    key: str,
    batch: Batch,
    sinks: Sequence[EventSink],
    result: IngestResult,
) -> SourcePosition:
    """Parts, sinks and state of one batch, under the lake's lock; returns the position."""
    parsed = parse_lines(batch.lines)  # outside the lock: followers parse in parallel
    with _lake_lock(settings):
        state = LakeState.load(settings)
        fresh = unread(batch, state.positions.get(key))
        if len(fresh.lines) < len(batch.lines):
            log.info(
                "%d lines were committed by another reader: skipped",
                len(batch.lines) - len(fresh.lines),
            )
            parsed = parse_lines(fresh.lines)
        if fresh.lines:
            names = _write_parts(settings, state.seq, fresh, parsed, spec)
            fault_point("ingest.after-parts")
            for sink in sinks:  # before our own commit: a sink sees a batch at least once
                sink.write_batch(key, fresh, parsed)
                fault_point(f"ingest.after-{sink.name}")
            state.seq += 1
            state.parts.extend(names)
            _count(state.pending, fresh, parsed)
        state.positions[key] = fresh.end
        state.save(settings)
    if fresh.lines:
        result.lines += len(fresh.lines)
        result.accepted += parsed.accepted
        result.quarantined += len(parsed.rejects)
        result.batches += 1
    return fresh.end


def _count(pending: PendingCounts, batch: Batch, parsed: ParsedBatch) -> None:
    """Add the batch to what was committed since the last refresh report."""
    pending.lines += len(batch.lines)
    pending.accepted += parsed.accepted
    pending.quarantined += len(parsed.rejects)
    reasons = pending.reasons
    for r in parsed.rejects:
        reason = r.reason.split(" '")[0].split(" (")[0]
        reasons[reason] = reasons.get(reason, 0) + 1


def _refresh_due(settings: Settings) -> bool:
    """Something was committed since the last refresh, which is old enough."""
    state = LakeState.load(settings)
    last = state.refreshed
    if last is not None and state.seq <= last.seq:
        return False
    at = last.at if last is not None else 0.0
    return time.time() - at >= settings.data.ingest_refresh_seconds


def _refresh(settings: Settings, spec: str, key: str, result: IngestResult) -> None:
    """Rebuild the tables from every committed part and write the refresh report.

    The lake's lock is held only to read the state and to write it back: the tables are built
    from the parts committed when the refresh began, while batches go on committing (a
    follower's answers stay fresh during a rebuild that takes seconds). Refreshes of several
    pipelines take turns on their own lock, so no part a rebuild reads is merged away under it.
    """
    start = time.perf_counter()
    with exclusive_lock(settings.lake_path / ".refresh.lock", wait=True):
        with _lake_lock(settings):
            state = LakeState.load(settings)
            # Parts: merged into one per kind once there are many (rare: under the lock)
            replaced = _compact(settings, state)
            if replaced:
                state.save(settings)
        _delete_parts(settings, replaced)
        # Tables: rebuilt from the parts committed at the start
        old_ratings = read_table(settings, "ratings")
        tables = materialize(settings, state)
        result.totals = lake_totals(tables)
        result.deltas = {k: v - state.totals.get(k, 0) for k, v in result.totals.items()}
        # Report: what was committed since the last one, drift and poisoning of the new ratings
        before = state.refreshed.positions.get(key) if state.refreshed else None
        positions = (before, state.positions.get(key))
        report = refresh_report(spec, state.pending, result.totals, result.deltas, positions)
        new_ratings = new_rows(old_ratings, tables.ratings)
        report["drift"] = drift_section(settings, old_ratings, new_ratings)
        report["poisoning"] = poisoning_section(settings, old_ratings, new_ratings, tables)
        report["unknown_titles"] = unknown_titles_section(settings, tables)
        result.report_path = str(write_report(settings, report, time.perf_counter() - start))
        # State: totals, the report's path, what this refresh covered (not what came since)
        with _lake_lock(settings):
            now = LakeState.load(settings)
            now.pending = now.pending.minus(state.pending)
            now.totals = result.totals
            now.last_report = result.report_path
            now.refreshed = Refreshed(state.seq, time.time(), dict(state.positions))
            now.save(settings)


def _compact(settings: Settings, state: LakeState) -> list[str]:
    if len(state.parts) <= settings.data.ingest_compact_parts:
        return []
    replaced = compact_parts(settings, state)
    log.info("merged %d committed parts into %d", len(replaced), len(state.parts))
    return replaced


def _delete_parts(settings: Settings, names: Sequence[str]) -> None:
    folder = parts_dir(settings)
    for name in names:
        (folder / name).unlink(missing_ok=True)
    if names:
        fsync_dir(folder)


def _remove_uncommitted_parts(settings: Settings, state: LakeState) -> None:
    """Parts no state lists: left by a run that died (the caller holds the lake's lock, and
    parts are only written under it, so none is being written now)."""
    committed = set(state.parts)
    folder = parts_dir(settings)
    if folder.exists():
        for p in folder.iterdir():
            if p.name not in committed:
                log.info("removing %s, left by an interrupted run", p.name)
                p.unlink()


def _write_parts(
    settings: Settings, seq: int, batch: Batch, parsed: ParsedBatch, spec: str
) -> list[str]:
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
        write_part(settings, name, frame)
        names.append(name)
    fsync_dir(parts_dir(settings))
    return names
