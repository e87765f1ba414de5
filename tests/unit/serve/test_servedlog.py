"""The served log loses nothing: what cannot be written waits in a spill file and is read
back; only when the spill file fails too (and memory is full) is a record dropped, counted
and noted in the gap register."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from movierec.core.gaps import pending_records, read_gaps
from movierec.core.provenance import read_predictions
from movierec.core.schema import PREDICTION_EVENTS
from movierec.core.settings import Settings
from movierec.serve.metrics import LOG_DROPPED
from movierec.serve.servedlog import ServedLog, write_predictions, write_served
from movierec.serve.spill import SpillFiles


def _rec(i: int, status: int = 200) -> dict[str, Any]:
    return {
        "request_id": f"r{i}",
        "ts": "2025-03-01T10:00:00.000+00:00",
        "user_id": i,
        "arm": "stable",
        "model_version": "v1",
        "items": "a,b",
        "latency_ms": 1.0,
        "status": status,
        "features_sha256": "x" * 64,
    }


def _logged(settings: Settings) -> list[str]:
    return [
        json.loads(line)["request_id"]
        for f in sorted(settings.logs_path.glob("served-*.jsonl"))
        for line in f.read_text().splitlines()
    ]


def _stopped(settings: Settings) -> ServedLog:
    """A served log whose writer thread is stopped: the test calls flush() itself."""
    served = ServedLog(settings)
    served._stop.set()
    served._thread.join()
    return served


def _blocked(tmp_path: Path, name: str) -> Path:
    """A folder path that cannot be created (a file stands where its parent should be)."""
    (tmp_path / f"{name}-blocker").write_text("not a folder")
    return tmp_path / f"{name}-blocker" / name


def test_an_unwritable_log_spills_then_reads_back(tmp_path: Path, settings: Settings) -> None:
    s = settings.replace(logs_dir=_blocked(tmp_path, "logs"))
    served = _stopped(s)
    for i in range(5):
        served.record(_rec(i, 200 if i % 2 else 400))
    served.flush()
    assert served.degraded() and "served" in served.degraded()[0]
    assert pending_records(s) == 5
    # the disk is fixed: the next flush writes the spill back, once
    (tmp_path / "logs-blocker").unlink()
    served.record(_rec(5))
    served.flush()
    served.flush()
    assert sorted(_logged(s)) == [f"r{i}" for i in range(6)]
    assert served.degraded() == [] and pending_records(s) == 0
    assert list(s.spill_path.glob("*.jsonl")) == []
    preds = (s.models_path / "prediction_events.csv").read_text()
    assert all(f"r{i}" in preds for i in (1, 3, 5)) and "r0" not in preds


def test_a_full_queue_spills_instead_of_dropping(settings: Settings) -> None:
    served = _stopped(settings.replace(log_queue_size=1))
    dropped = LOG_DROPPED._value.get()
    for i in range(4):
        served.record(_rec(i))
    assert served.queue.qsize() == 1 and pending_records(settings) == 3
    served.flush()
    assert sorted(_logged(settings)) == ["r0", "r1", "r2", "r3"]
    assert LOG_DROPPED._value.get() == dropped


def test_a_drop_is_counted_and_noted(tmp_path: Path, settings: Settings) -> None:
    s = settings.replace(log_queue_size=1, spill_dir=_blocked(tmp_path, "spill"))
    served = _stopped(s)
    dropped = LOG_DROPPED._value.get()
    served.record(_rec(0))
    served.record(_rec(1))  # the queue is full and the spill folder cannot be made
    assert LOG_DROPPED._value.get() == dropped + 1
    gaps = [g for g in read_gaps(s) if g["sink"] == "served"]
    assert len(gaps) == 1 and gaps[0]["records"] == 1 and "queue full" in gaps[0]["reason"]
    assert gaps[0]["first_ts"] == "2025-03-01T10:00:00.000+00:00"


def test_log_and_spill_unwritable_keep_a_bounded_backlog(
    tmp_path: Path, settings: Settings
) -> None:
    s = settings.replace(
        logs_dir=_blocked(tmp_path, "logs"),
        spill_dir=_blocked(tmp_path, "spill"),
        log_backlog_size=3,
    )
    served = _stopped(s)
    dropped = LOG_DROPPED._value.get()
    for i in range(5):
        served.record(_rec(i))
    served.flush()
    assert LOG_DROPPED._value.get() == dropped + 2  # the two oldest
    (tmp_path / "logs-blocker").unlink()
    served.flush()
    assert sorted(_logged(s)) == ["r2", "r3", "r4"]


def test_a_dead_workers_spill_file_is_taken_over(settings: Settings) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(dead.stdout)
    other = SpillFiles(settings.spill_path)
    other.pid = pid
    other.write("served", [_rec(7), _rec(8)])
    live = SpillFiles(settings.spill_path)
    live.pid = 1  # init: alive, not ours
    live.write("served", [_rec(9)])
    served = _stopped(settings)
    served.flush()
    assert sorted(_logged(settings)) == ["r7", "r8"]
    assert [p.name.split("-")[2] for p in settings.spill_path.glob("served-*")] == ["1"]
    shutil.rmtree(settings.spill_path)


def test_lines_encoded_by_the_requests_are_the_lines_the_writer_would_have_made(
    tmp_path: Path, settings: Settings
) -> None:
    recs = [_rec(i, 200 if i % 3 else 404) for i in range(7)]
    recs[1]["request_id"] = 'quoted "id", with a comma'  # a client's id, CSV-quoted
    served = _stopped(settings)
    for rec in recs:
        served.record(rec)
    served.flush()
    other = settings.replace(logs_dir=tmp_path / "other-logs", models_dir=tmp_path / "other")
    write_served(other, recs)
    write_predictions(other, [r for r in recs if r["status"] == 200])
    for mine, theirs in (
        (settings.served_log_file, other.served_log_file),
        (settings.models_path / PREDICTION_EVENTS, other.models_path / PREDICTION_EVENTS),
    ):
        mine_files = sorted(mine.parent.glob(f"{mine.stem}*"))
        theirs_files = sorted(theirs.parent.glob(f"{theirs.stem}*"))
        assert [f.name for f in mine_files] == [f.name for f in theirs_files] != []
        for a, b in zip(mine_files, theirs_files, strict=True):
            assert a.read_bytes() == b.read_bytes()
    assert read_predictions(settings)[0].request_id == recs[1]["request_id"]
