"""The served log's gap register: what the service could not log, so readers know.

The served-log writer (`serve.servedlog`) keeps every record it cannot write at once, in
memory or in a spill file under `spill_dir`, and writes it later. Only when both the log and
the spill file refuse and the memory backlog is full does it drop records; each such drop is
appended here (one JSON line: when, how many, the span of response times, why), besides the
`movierec_served_log_dropped_total` counter. The online evaluator reads this register and
the spill files still waiting, and reports both as a data gap.

The register lives in `spill_dir` (`log-gaps.jsonl`), and in `logs/` when `spill_dir` cannot be
written either.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypedDict

from movierec.core.files import append_lines
from movierec.core.settings import Settings

log = logging.getLogger(__name__)

GAPS_FILE = "log-gaps.jsonl"  # never served*: the served-log readers glob that
SPILL_SINKS = ("served", "predictions")


def gap_files(settings: Settings) -> list[Path]:
    return [settings.spill_path / GAPS_FILE, settings.logs_path / GAPS_FILE]


class Gap(TypedDict):
    """One line of the register."""

    noted_at: str
    sink: str  # "served" or "predictions"
    records: int
    first_ts: str | None  # the span of the lost records' response times
    last_ts: str | None
    reason: str
    pid: int


def record_gap(
    settings: Settings, sink: str, records: Sequence[Mapping[str, object]], reason: str
) -> None:
    """Note that these records are lost from `sink` (`served`: the served log, `predictions`:
    the prediction register). Best effort: the served log's counter has them too."""
    times = sorted(str(r.get("ts", "")) for r in records)
    gap: Gap = {
        "noted_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "sink": sink,
        "records": len(records),
        "first_ts": times[0] if times else None,
        "last_ts": times[-1] if times else None,
        "reason": reason,
        "pid": os.getpid(),
    }
    line = json.dumps(gap)
    for path in gap_files(settings):
        try:
            append_lines(path, [line])
            return
        except OSError as exc:
            log.error("cannot note a served-log gap in %s: %s", path, exc)


def read_gaps(settings: Settings) -> list[Gap]:
    """Every gap noted, from both places, unreadable lines skipped."""
    out: list[Gap] = []
    for path in gap_files(settings):
        for line in _lines(path):
            gap = _gap(line)
            if gap is None:
                log.warning("skipped an unreadable line of %s", path)
            else:
                out.append(gap)
    return out


def _gap(line: str) -> Gap | None:
    """A register line, or None when it is not one (a missing field takes its default)."""
    try:
        raw = json.loads(line)
        if not isinstance(raw, dict):
            return None
        return Gap(
            noted_at=str(raw.get("noted_at", "")),
            sink=str(raw.get("sink", "served")),
            records=int(raw.get("records", 0)),
            first_ts=_text(raw.get("first_ts")),
            last_ts=_text(raw.get("last_ts")),
            reason=str(raw.get("reason", "")),
            pid=int(raw.get("pid", 0)),
        )
    except (ValueError, TypeError):  # JSONDecodeError is a ValueError
        return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def spill_files(folder: Path, sink: str) -> list[Path]:
    """Spill files of one sink (`served` or `predictions`) in `folder` (`spill_dir`)."""
    return sorted(folder.glob(f"{sink}-*.jsonl")) if folder.is_dir() else []


def pending_records(settings: Settings) -> int:
    """Served-log records that wait in spill files (not lost, not in the log yet)."""
    return sum(sum(1 for _ in _lines(p)) for p in spill_files(settings.spill_path, "served"))


def _lines(path: Path) -> Iterator[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            yield from (line for line in f if line.strip())
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc)
        return
