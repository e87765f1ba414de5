"""Durable file operations shared by every layer: atomic replace, locked appends, hashes, locks.

Atomic replace = write a temporary sibling, fsync it, rename it over the target, fsync the
folder. A reader therefore sees the old file or the new one, never half of either.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from movierec.core.errors import LockBusy

_CHUNK = 1 << 20


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fsync_dir(path: Path | str) -> None:
    """Make a rename or creation inside `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Replace `path` with `data` atomically and durably."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, obj: object) -> None:
    """Replace a JSON file atomically (sorted keys, trailing newline)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path | str, default: object = None) -> object:
    """Parsed JSON, or `default` when the file does not exist: the caller's typed reader
    checks what it holds."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return default


def append_daily_jsonl(base: Path, records: Iterable[Mapping[str, object]]) -> None:
    """Append records as JSON lines to `<stem>-YYYY-MM-DD<suffix>` beside `base`, by the
    date of each record's ISO "ts", one locked write per file."""
    by_day: dict[str, list[str]] = {}
    for rec in records:
        by_day.setdefault(str(rec["ts"])[:10], []).append(json.dumps(rec, separators=(",", ":")))
    append_daily_lines(base, by_day)


def append_daily_lines(base: Path, by_day: Mapping[str, list[str]]) -> None:
    """Append each day's lines (already encoded) to `<stem>-YYYY-MM-DD<suffix>` beside
    `base`, one locked write per file."""
    for day, lines in by_day.items():
        append_lines(base.with_name(f"{base.stem}-{day}{base.suffix}"), lines)


def append_lines(path: Path | str, lines: Iterable[str]) -> None:
    """Append whole lines under an exclusive lock, in one write, then fsync.

    Writers in several processes never interleave: each call's lines land together.
    """
    payload = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    if payload:
        data = payload.encode("utf-8")
        append_whole(path, lambda _size: data)


def append_whole(path: Path | str, render: Callable[[int], bytes]) -> None:
    """Append `render(size of the file)` under an exclusive lock, in one write, fsync'ed.

    All or nothing: when the write or the fsync fails (a full disk), the file is cut back to
    its size before, so it never keeps half a line and a retry writes nothing twice.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        try:
            view = memoryview(render(size))
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive_lock(path: Path | str, *, wait: bool = False) -> Iterator[None]:
    """Hold an advisory lock on `path` for the block; raise LockBusy at once if taken.

    The kernel drops the lock when the process dies, so a crash never leaves it stuck.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockBusy(f"{path} is locked by another process") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)
