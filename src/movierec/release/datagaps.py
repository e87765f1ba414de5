"""What the online evaluator could not see: served-log records lost or not yet written.

The service notes every served-log record it had to drop in the gap register
(`core.gaps`), and keeps the ones it could not write yet in spill files. The evaluator calls
`served_log_gaps` and reports the result beside its metrics (`data_gaps` in
`online_metrics.json` and `feedback_events.json`, and a reason line), so a decision taken on
incomplete data says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from movierec.core.gaps import pending_records, read_gaps
from movierec.core.settings import Settings


@dataclass(frozen=True)
class DataGaps:
    """Served-log records the evaluator could not see (`data_gaps` in the records)."""

    dropped: int = 0  # lost, all time
    dropped_in_period: int = 0  # lost since the period began
    waiting_in_spill: int = 0  # not written yet


def served_log_gaps(settings: Settings, since: str | None) -> DataGaps:
    """Records dropped from the served log (all time and since `since`, an ISO time), and
    records still waiting in spill files."""
    start = pd.Timestamp(since) if since else None
    dropped = dropped_since = 0
    for gap in read_gaps(settings):
        if gap["sink"] != "served":
            continue
        dropped += gap["records"]
        last = gap["last_ts"]
        if start is None or (last and pd.Timestamp(last) >= start):
            dropped_since += gap["records"]
    return DataGaps(dropped, dropped_since, pending_records(settings))


def gap_reason(gaps: DataGaps) -> str | None:
    """A reason line when the period's data is incomplete, else None."""
    if not gaps.dropped_in_period and not gaps.waiting_in_spill:
        return None
    return (
        f"data gap: {gaps.dropped_in_period} served-log records lost in the period, "
        f"{gaps.waiting_in_spill} not yet written (spill file)"
    )
