"""The evaluator's data gap: records the service dropped (gap register) or has not written
yet (spill files), counted for the evaluated period."""

from __future__ import annotations

from movierec.core.gaps import record_gap
from movierec.core.settings import Settings
from movierec.release.datagaps import DataGaps, gap_reason, served_log_gaps
from movierec.serve.spill import SpillFiles


def _rec(ts: str) -> dict[str, object]:
    return {"request_id": ts, "ts": ts, "status": 200}


def test_no_gap_no_reason(settings: Settings) -> None:
    gaps = served_log_gaps(settings, "2025-03-01T00:00:00+00:00")
    assert gaps == DataGaps(dropped=0, dropped_in_period=0, waiting_in_spill=0)
    assert gap_reason(gaps) is None


def test_drops_in_and_before_the_period_and_spilled_records(settings: Settings) -> None:
    record_gap(settings, "served", [_rec("2025-02-28T10:00:00+00:00")] * 3, "old")
    record_gap(settings, "served", [_rec("2025-03-01T10:00:00+00:00")] * 2, "queue full")
    record_gap(settings, "predictions", [_rec("2025-03-01T10:00:00+00:00")], "disk full")
    SpillFiles(settings.spill_path).write("served", [_rec("2025-03-01T11:00:00+00:00")] * 4)
    gaps = served_log_gaps(settings, "2025-03-01T00:00:00+00:00")
    assert gaps == DataGaps(dropped=5, dropped_in_period=2, waiting_in_spill=4)
    reason = gap_reason(gaps)
    assert reason is not None and "2 served-log records lost" in reason and "4 not yet" in reason
