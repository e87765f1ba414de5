"""Appends are all or nothing: a write that fails (a full disk) leaves the file as it was."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from movierec.core import files
from movierec.core.files import append_lines


def test_a_failed_append_is_cut_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "log.jsonl"
    append_lines(path, ["one", "two"])
    before = path.read_bytes()

    def full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        append_lines(path, ["three", "four"])
    monkeypatch.undo()
    assert path.read_bytes() == before
    append_lines(path, ["five"])
    assert path.read_text().splitlines() == ["one", "two", "five"]
