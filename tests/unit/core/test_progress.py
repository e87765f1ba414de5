"""Progress: plain log lines when the output is not a terminal."""

from __future__ import annotations

import logging

import pytest

from movierec.core import progress
from movierec.core.progress import Progress, track


def test_without_a_terminal_progress_is_logged_periodically_and_at_the_end(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    caplog.set_level(logging.INFO, logger="movierec.core.progress")
    with Progress("ingest", total=1000, unit="lines", every=10, bar=False) as bar:
        bar.update(100)  # t = 0: too soon for a line
        clock[0] = 11.0
        bar.update(300)  # a line: 40%
        clock[0] = 12.0
        bar.update(600)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("ingest: 40% (400/1,000 lines")
    assert lines[-1].startswith("ingest: 100% (1,000/1,000 lines") and lines[-1].endswith("done")
    assert len(lines) == 2


def test_track_yields_every_item_and_counts_them(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="movierec.core.progress")
    assert list(track(range(5), "trials", unit="trials")) == [0, 1, 2, 3, 4]
    assert "trials: 100% (5/5 trials" in caplog.records[-1].getMessage()
