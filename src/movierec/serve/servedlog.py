"""The served log (JSONL) and the prediction events register, written off the request path.

A request encodes its record's lines (the served log's JSON, the register's CSV row: 13 us)
and puts them on a bounded queue; one background thread per worker writes what has gathered
every 200 ms (sooner only when a full batch of 5,000 waits) with one flock'ed, fsync'ed,
all-or-nothing write per file, so lines of several workers never interleave and the disk sees
a few writes a second, not one per request. The writer only joins lines: when it encoded them
itself, a batch (450 records at 2,250 requests/s per worker) held the GIL for 6 ms every
200 ms, and the requests that came meanwhile waited for it.

Nothing is lost silently. A record that cannot go where it belongs goes to a spill file
(`serve.spill`, under `spill_dir`) and is read back into the log once the log can be written
again:
- the queue is full (the writer fell behind): the request waits at most 50 ms for room,
  then writes its record to the spill file itself;
- the log cannot be written (a full disk, a read-only folder): the batch goes to the spill
  file, the worker reports itself degraded (`/readyz`, `movierec_served_log_degraded`) until
  a write succeeds again.
Only when the spill file cannot be written either are records kept in memory (at most
`log_backlog_size` per sink), and beyond that dropped: counted
(`movierec_served_log_dropped_total`), alerted on, and noted in the gap register
(`core.gaps`) that the online evaluator reports. Records left at worker exit are written,
else spilled, else noted as dropped.

Daily files: the served log is `logs/served-YYYY-MM-DD.jsonl` (UTC date of the response);
`models/prediction_events.csv` is renamed to `prediction_events-YYYY-MM-DD.csv` when the day
changes (under its lock; the provenance readers read all of them).
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from movierec.core.files import append_daily_jsonl, append_daily_lines
from movierec.core.gaps import SPILL_SINKS, record_gap
from movierec.core.provenance import (
    PredictionRecord,
    append_csv_lines,
    append_predictions,
    csv_line,
)
from movierec.core.schema import PREDICTION_EVENTS
from movierec.core.settings import Settings
from movierec.serve.metrics import LOG_DROPPED, SERVED_LOG_DEGRADED, SERVED_LOG_SPILLED
from movierec.serve.spill import SpillFiles, read_records

log = logging.getLogger(__name__)

_BATCH = 5000
_INTERVAL = 0.2
_PUT_WAIT = 0.05
_RETRY = 1.0

Records = list[dict[str, Any]]
# json.dumps with any argument builds an encoder per call (3 us of 10 for a served record)
_JSON = json.JSONEncoder(separators=(",", ":"))
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Entry:
    """A record and its lines, encoded by the request that made it."""

    rec: dict[str, Any]
    served: str  # its JSON line
    prediction: str | None  # its register row (answered requests only)

    @classmethod
    def of(cls, rec: dict[str, Any]) -> Entry:
        served = _JSON.encode(rec) + "\n"
        answered = rec["status"] == 200
        return cls(rec, served, csv_line(_prediction(rec)) if answered else None)


Entries = list[Entry]


class ServedLog:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.queue: queue.Queue[Entry] = queue.Queue(maxsize=settings.serving.log_queue_size)
        self.spill = SpillFiles(settings.spill_path)
        self.backlog_size = settings.serving.log_backlog_size
        self.writers: dict[str, Callable[[Settings, Records], None]] = {
            "served": write_served,
            "predictions": write_predictions,
        }
        self._pending: dict[str, Entries] = {sink: [] for sink in SPILL_SINKS}
        self.problems: dict[str, str] = {}  # sink -> why it cannot be written now
        self._next_try = 0.0  # while degraded, spill files are tried at most once a second
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="served-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def record(self, rec: dict[str, Any]) -> None:
        try:
            self.queue.put(Entry.of(rec), timeout=_PUT_WAIT)
        except queue.Full:
            for sink, recs in _by_sink([rec]).items():
                try:
                    self._spill(sink, recs)
                except OSError as exc:
                    self._drop(sink, recs, f"queue full and the spill file failed: {exc}")

    def degraded(self) -> list[str]:
        """Why this worker cannot write its logs right now (empty: all is well)."""
        return [f"{sink}: {why}" for sink, why in sorted(self.problems.items())]

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.flush(block=True)
            except Exception:  # the writer must survive anything
                log.exception("served-log writer failed; it keeps running")
            rest = _INTERVAL - (time.monotonic() - started)
            if rest > 0 and self.queue.qsize() < _BATCH:
                self._stop.wait(rest)

    def flush(self, block: bool = False) -> None:
        """Write what has gathered; then, if the logs can be written, read spill files back."""
        for sink, entries in _entries_by_sink(self._drain(block)).items():
            self._pending[sink].extend(entries)
        for sink in SPILL_SINKS:
            self._write_pending(sink)
        if not any(self._pending.values()):
            self._read_back()

    def _drain(self, block: bool) -> Entries:
        return drain(self.queue, block)

    def _write_pending(self, sink: str) -> None:
        entries = self._pending[sink]
        if not entries:
            return
        try:
            LINE_WRITERS[sink](self.settings, entries)
        except OSError as exc:
            self._failed(sink, exc)
            self._pending[sink] = self._spill_or_keep(sink, entries, str(exc))
            return
        self._pending[sink] = []
        self._recovered(sink)

    def _spill_or_keep(self, sink: str, entries: Entries, why: str) -> Entries:
        """Spill the records; if that fails too, keep the newest `backlog_size` in memory."""
        try:
            self._spill(sink, _records(entries))
            return []
        except OSError as exc:
            keep = entries[-self.backlog_size :]
            lost = entries[: len(entries) - len(keep)]
            if lost:
                why = f"{why}; spill failed ({exc}); memory backlog full"
                self._drop(sink, _records(lost), why)
            return keep

    def _read_back(self) -> None:
        if self.problems and time.monotonic() < self._next_try:
            return
        for sink in SPILL_SINKS:
            for path in self.spill.readable(sink):
                recs = read_records(path)
                try:
                    if recs:
                        self.writers[sink](self.settings, recs)
                    path.unlink()
                except OSError as exc:
                    self._failed(sink, exc)
                    self._next_try = time.monotonic() + _RETRY
                    return
                self._recovered(sink)
                log.info("read back %d %s records from %s", len(recs), sink, path.name)

    def _spill(self, sink: str, recs: Records) -> None:
        self.spill.write(sink, recs)
        if sink == "served":
            SERVED_LOG_SPILLED.inc(len(recs))

    def _drop(self, sink: str, recs: Records, why: str) -> None:
        if sink == "served":  # the counter is the served log's; the register notes both
            LOG_DROPPED.inc(len(recs))
        log.error("dropped %d %s records: %s", len(recs), sink, why)
        record_gap(self.settings, sink, recs, why)

    def _failed(self, sink: str, exc: OSError) -> None:
        if sink not in self.problems:
            log.error("cannot write the %s log, spilling: %s", sink, exc)
        self.problems[sink] = f"{exc.strerror or exc} ({getattr(exc, 'filename', '') or ''})"
        SERVED_LOG_DEGRADED.set(1)

    def _recovered(self, sink: str) -> None:
        if self.problems.pop(sink, None) is not None:
            log.info("the %s log can be written again", sink)
            if not self.problems:
                SERVED_LOG_DEGRADED.set(0)

    def close(self) -> None:
        """At worker exit: write everything; what cannot be written is spilled, else noted."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=2)
        while not self.queue.empty():
            self.flush()
        self.flush()
        for sink in SPILL_SINKS:
            if self._pending[sink]:
                why = "worker exit: the log cannot be written"
                self._drop(sink, _records(self._pending[sink]), why)
                self._pending[sink] = []


def drain(q: queue.Queue[T], block: bool, limit: int = _BATCH) -> list[T]:
    """Up to `limit` items of what `q` holds; with `block`, waits up to 200 ms for the first."""
    batch: list[T] = []
    try:
        if block:
            batch.append(q.get(timeout=_INTERVAL))
        while len(batch) < limit:
            batch.append(q.get_nowait())
    except queue.Empty:
        pass
    return batch


def _entries_by_sink(entries: Entries) -> dict[str, Entries]:
    """`_by_sink` of entries."""
    out: dict[str, Entries] = {"served": entries} if entries else {}
    answered = [e for e in entries if e.prediction is not None]
    if answered:
        out["predictions"] = answered
    return out


def _records(entries: Sequence[Entry]) -> Records:
    return [e.rec for e in entries]


def _by_sink(recs: Records) -> dict[str, Records]:
    """Every record goes to the served log; answered ones (200) to the predictions too."""
    out: dict[str, Records] = {"served": recs} if recs else {}
    answered = [r for r in recs if r["status"] == 200]
    if answered:
        out["predictions"] = answered
    return out


def write_served(settings: Settings, recs: Records) -> None:
    append_daily_jsonl(settings.served_log_file, recs)


def write_predictions(settings: Settings, recs: Records) -> None:
    path = settings.models_path / PREDICTION_EVENTS
    _rotate_daily(path)
    append_predictions(settings, [_prediction(r) for r in recs], path)


def _prediction(rec: dict[str, Any]) -> PredictionRecord:
    return PredictionRecord(
        request_id=rec["request_id"],
        timestamp=rec["ts"],
        user_id=rec["user_id"],
        model_version=rec["model_version"],
        arm=rec["arm"],
        features_sha256=rec["features_sha256"],
        latency_ms=rec["latency_ms"],
    )


def write_served_lines(settings: Settings, entries: Entries) -> None:
    """`write_served` of lines the requests encoded."""
    by_day: dict[str, list[str]] = {}
    for e in entries:
        by_day.setdefault(e.rec["ts"][:10], []).append(e.served)
    append_daily_lines(settings.served_log_file, by_day)


def write_prediction_lines(settings: Settings, entries: Entries) -> None:
    """`write_predictions` of rows the requests encoded."""
    path = settings.models_path / PREDICTION_EVENTS
    _rotate_daily(path)
    append_csv_lines(path, PredictionRecord, [e.prediction for e in entries if e.prediction])


LINE_WRITERS: dict[str, Callable[[Settings, Entries], None]] = {
    "served": write_served_lines,
    "predictions": write_prediction_lines,
}


def _rotate_daily(path: Path) -> None:
    """Rename yesterday's register to `<stem>-<date>.csv`, once, under its lock."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    day = datetime.fromtimestamp(st.st_mtime, UTC).date()
    if day == datetime.now(UTC).date():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.path.exists(path) and os.stat(path).st_ino == os.fstat(fd).st_ino:
                target = path.with_name(f"{path.stem}-{day.isoformat()}{path.suffix}")
                if not target.exists():
                    os.rename(path, target)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
