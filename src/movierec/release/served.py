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
    frame = pd.DataFrame(_read_jsonl(files, "served"), columns=list(SERVED_COLUMNS))
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
    frame["items"] = frame["items"].map(_as_list)
    frame["status"] = pd.to_numeric(frame["status"], errors="coerce").fillna(0).astype(int)
    frame["latency_ms"] = pd.to_numeric(frame["latency_ms"], errors="coerce")
    frame["user_id"] = pd.to_numeric(frame["user_id"], errors="coerce")
    return frame


SHADOW_COLUMNS = (
    "request_id",
    "ts",
    "user_id",
    "model_version",
    "items",
    "served_version",
    "served_items",
    "latency_ms",
)


def shadow_log_files(settings: Settings) -> list[Path]:
    """The shadow log's daily files, oldest first."""
    stem = settings.shadow_log_file.stem
    return sorted(settings.shadow_log_file.parent.glob(f"{stem}-*.jsonl"))


def load_shadow(files: Iterable[Path]) -> pd.DataFrame:
    """Shadow records (`serve.shadow`) as a frame: the candidate's list (`items`) beside what
    stable served (`served_items`), both as lists of ids. Corrupt lines are skipped."""
    frame = pd.DataFrame(_read_jsonl(files, "shadow"), columns=list(SHADOW_COLUMNS))
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
    frame["items"] = frame["items"].map(_as_list)
    frame["served_items"] = frame["served_items"].map(_as_list)
    frame["latency_ms"] = pd.to_numeric(frame["latency_ms"], errors="coerce")
    frame["user_id"] = pd.to_numeric(frame["user_id"], errors="coerce")
    return frame.dropna(subset=["user_id"])


def _read_jsonl(files: Iterable[Path], what: str) -> list[dict[str, object]]:
    """The log's records (objects); a line that is not one is counted and skipped."""
    rows: list[dict[str, object]] = []
    bad = 0
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    record = None
                if isinstance(record, dict):
                    rows.append(record)
                else:
                    bad += 1
    if bad:
        log.warning("skipped %d unreadable %s-log lines", bad, what)
    return rows


def _as_list(items: object) -> list[str]:
    if isinstance(items, list):
        return [str(i) for i in items]
    if isinstance(items, str) and items:
        return items.split(",")
    return []
