"""The served log (JSONL) and the prediction events register, written off the request path.

A request only puts a record on a bounded queue; one background thread per worker writes
what has gathered every 200 ms (sooner only when a full batch of 5,000 waits) with one
flock'ed, fsync'ed write per file, so lines of several workers never interleave and the disk
sees a few writes a second, not one per request. If the disk is so slow that the queue stays
full, a request waits at most 50 ms for room, then its record is dropped, counted
(`movierec_served_log_dropped_total`) and warned about: losing a log line beats failing or
stalling the request. Records left in the queue are flushed at worker exit.

Daily files: the served log is `logs/served-YYYY-MM-DD.jsonl` (UTC date of the response);
`models/prediction_events.csv` is renamed to `prediction_events-YYYY-MM-DD.csv` when the day
changes (under its lock; the provenance readers read all of them).
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import queue
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from movierec.core.files import append_daily_jsonl
from movierec.core.provenance import PredictionRecord, append_predictions
from movierec.core.schema import PREDICTION_EVENTS
from movierec.core.settings import Settings
from movierec.serve.metrics import LOG_DROPPED

log = logging.getLogger(__name__)

_BATCH = 5000
_INTERVAL = 0.2
_PUT_WAIT = 0.05


class ServedLog:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue(
            maxsize=settings.serving.log_queue_size
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="served-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def record(self, rec: dict[str, Any]) -> None:
        try:
            self.queue.put(rec, timeout=_PUT_WAIT)
        except queue.Full:
            LOG_DROPPED.inc()
            log.warning("served log queue full: dropped record %s", rec.get("request_id"))

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.flush(block=True)
            rest = _INTERVAL - (time.monotonic() - started)
            if rest > 0 and self.queue.qsize() < _BATCH:
                self._stop.wait(rest)

    def flush(self, block: bool = False) -> None:
        batch: list[dict[str, Any]] = []
        try:
            if block:
                batch.append(self.queue.get(timeout=_INTERVAL))
            while len(batch) < _BATCH:
                batch.append(self.queue.get_nowait())
        except queue.Empty:
            pass
        if batch:
            try:
                self._write(batch)
            except OSError as exc:  # keep serving; the next batch may succeed
                LOG_DROPPED.inc(len(batch))
                log.error("could not write %d served-log records: %s", len(batch), exc)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        append_daily_jsonl(self.settings.served_log_file, batch)
        preds = [
            PredictionRecord(
                request_id=r["request_id"],
                timestamp=r["ts"],
                user_id=r["user_id"],
                model_version=r["model_version"],
                arm=r["arm"],
                features_sha256=r["features_sha256"],
                latency_ms=r["latency_ms"],
            )
            for r in batch
            if r["status"] == 200
        ]
        if preds:
            path = self.settings.models_path / PREDICTION_EVENTS
            _rotate_daily(path)
            append_predictions(self.settings, preds, path)

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=2)
        while not self.queue.empty():
            self.flush()


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
