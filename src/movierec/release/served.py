"""The served log as the evaluator reads it: every response the service logged, one frame.

The service writes `logs/served-YYYY-MM-DD.jsonl` (one JSON object a line: request_id, ts,
user_id, arm, model_version, items, latency_ms, status); the evaluator and the online
analyses read all the daily files. A corrupt line is skipped with a warning, never fatal.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from movierec.core.settings import Settings

log = logging.getLogger(__name__)

SERVED_COLUMNS = (
    "request_id",
    "ts",
    "user_id",
    "arm",
    "model_version",
    "items",
    "latency_ms",
    "status",
)


def served_log_files(settings: Settings) -> list[Path]:
    """The served log and its daily-rotated siblings, oldest first."""
    stem = settings.served_log_file.stem
    return sorted(settings.served_log_file.parent.glob(f"{stem}*.jsonl"))


def load_served(files: Iterable[Path]) -> pd.DataFrame:
    """Served records as a frame: request_id, ts (UTC), user_id, arm, model_version, items
    (list of ids), latency_ms, status. Corrupt lines are skipped with a warning."""
    rows: list[dict[str, Any]] = []
    bad = 0
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    bad += 1
    if bad:
        log.warning("skipped %d unreadable served-log lines", bad)
    frame = pd.DataFrame(rows, columns=list(SERVED_COLUMNS))
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
    frame["items"] = frame["items"].map(_as_list)
    frame["status"] = pd.to_numeric(frame["status"], errors="coerce").fillna(0).astype(int)
    frame["latency_ms"] = pd.to_numeric(frame["latency_ms"], errors="coerce")
    frame["user_id"] = pd.to_numeric(frame["user_id"], errors="coerce")
    return frame


def _as_list(items: Any) -> list[str]:
    if isinstance(items, list):
        return [str(i) for i in items]
    if isinstance(items, str) and items:
        return items.split(",")
    return []
