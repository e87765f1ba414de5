"""Spill files: served-log records that could not be written where they belong, on disk
until they can be (`spill_dir`, default `data/spill`).

A worker appends to `<sink>-<host>-<pid>-<n>.jsonl` (sink `served` or `predictions`; one
JSON record a line; flock'ed, fsync'ed, all or nothing). Reading back, it first moves on to
`n + 1`, so the file it reads is no longer written, and it also takes over the files of
workers of this host that are dead (renamed to its own name first: a rename succeeds for one
worker only). Files of other hosts (replicas sharing the folder) are left to their owners.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
from pathlib import Path
from typing import Any

from movierec.core.files import append_lines
from movierec.core.gaps import spill_files


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname()) or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SpillFiles:
    """One worker's spill files."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.host = _host()
        self.pid = os.getpid()
        self.seq = 0
        self.lock = threading.Lock()

    def write(self, sink: str, records: list[dict[str, Any]]) -> None:
        """Append the records (raises OSError when the folder cannot take them)."""
        lines = [json.dumps(r, separators=(",", ":")) for r in records]
        with self.lock:
            append_lines(self.folder / f"{sink}-{self.host}-{self.pid}-{self.seq}.jsonl", lines)

    def readable(self, sink: str) -> list[Path]:
        """Spill files of `sink` this worker may read back now (its own, dead workers')."""
        out: list[Path] = []
        for path in spill_files(self.folder, sink):
            host, pid, seq = _parse(path.name, sink)
            if host != self.host:
                continue
            if pid == self.pid:
                if seq == str(self.seq):
                    with self.lock:
                        self.seq += 1  # appends go to the next file from now on
                out.append(path)
            elif pid is not None and not _alive(pid):
                claimed = path.with_name(f"{sink}-{self.host}-{self.pid}-c{pid}x{seq}.jsonl")
                with contextlib.suppress(FileNotFoundError):  # another worker was first
                    os.rename(path, claimed)
                    out.append(claimed)
        return out


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of a spill file (a torn last line, from a crash mid-write, is skipped)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
    return out


def _parse(name: str, sink: str) -> tuple[str, int | None, str]:
    parts = name[len(sink) + 1 : -len(".jsonl")].split("-")
    if len(parts) != 3 or not parts[1].isdigit():
        return "", None, ""
    return parts[0], int(parts[1]), parts[2]
