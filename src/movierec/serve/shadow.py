"""The shadow stage in the service: a candidate computes its list for a sample of stable's
requests, off the request path, and the pair is logged for the evaluator.

A request served by stable while routing names a shadow candidate is sampled when a hash of
its request id modulo 100 is below `shadow_pct`. The request only puts (model, request id,
time, user, what stable served) on a bounded queue and answers; a background thread per
worker computes the candidate's list and appends one JSON line per request to the shadow log
(`logs/shadow-YYYY-MM-DD.jsonl`: request_id, ts, user_id, model_version, items,
served_version, served_items, latency_ms), a batch at a time, flock'ed. A full queue drops the
record at once (counted in `movierec_shadow_dropped_total`): the shadow never delays an answer.
Nothing of the shadow's list reaches the user, the served log or the prediction register.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from movierec.core.files import append_daily_jsonl
from movierec.core.settings import Settings
from movierec.serve.metrics import SHADOW_DROPPED, SHADOW_LISTS
from movierec.serve.models import ServingModel
from movierec.serve.servedlog import drain

log = logging.getLogger(__name__)

_BATCH = 2000


def shadow_sampled(request_id: str, pct: int) -> bool:
    """Whether a request is in the shadow sample (stable across processes)."""
    if pct <= 0:
        return False
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100 < pct


@dataclass(frozen=True)
class ShadowTask:
    model: ServingModel
    request_id: str
    ts: str
    user_id: int
    served_version: str
    served_items: str


class ShadowRunner:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.queue: queue.Queue[ShadowTask] = queue.Queue(maxsize=settings.serving.log_queue_size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def offer(self, task: ShadowTask) -> None:
        """Queue a sampled request; never blocks."""
        try:
            self.queue.put_nowait(task)
        except queue.Full:
            SHADOW_DROPPED.inc()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.flush(block=True)
            except Exception:  # the runner must survive anything, as the served log's writer
                log.exception("shadow runner failed; it keeps running")

    def flush(self, block: bool = False) -> None:
        """Compute and write what is queued (waiting up to 200 ms for a first task)."""
        tasks = drain(self.queue, block, _BATCH)
        if not tasks:
            return
        records = [_compute(t) for t in tasks]
        try:
            self._write(records)
        except OSError as exc:  # keep serving; the shadow is evidence, not an answer
            SHADOW_DROPPED.inc(len(records))
            log.error("could not write %d shadow records: %s", len(records), exc)

    def _write(self, records: list[dict[str, Any]]) -> None:
        append_daily_jsonl(self.settings.shadow_log_file, records)
        SHADOW_LISTS.inc(len(records))

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=2)
        while not self.queue.empty():
            self.flush()


def _compute(task: ShadowTask) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        items = task.model.recommend(task.user_id)
    except Exception:  # a failing candidate is evidence too: an empty list, logged
        log.exception("shadow model %s failed for user %d", task.model.version, task.user_id)
        items = ""
    return {
        "request_id": task.request_id,
        "ts": task.ts,
        "user_id": task.user_id,
        "model_version": task.model.version,
        "items": items,
        "served_version": task.served_version,
        "served_items": task.served_items,
        "latency_ms": round((time.perf_counter() - start) * 1000, 3),
    }
