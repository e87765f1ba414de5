"""What the online evaluator could not see: served-log records lost or not yet written.

The service notes every served-log record it had to drop in the gap register
(`core.gaps`), and keeps the ones it could not write yet in spill files. The evaluator calls
`served_log_gaps` and reports the result beside its metrics (`data_gaps` in
`online_metrics.json` and `feedback_events.json`, and a reason line), so a decision taken on
incomplete data says so.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from movierec.core.gaps import pending_records, read_gaps
from movierec.core.settings import Settings


def served_log_gaps(settings: Settings, since: str | None) -> dict[str, Any]:
    """Records dropped from the served log (all time and since `since`, an ISO time), and
    records still waiting in spill files."""
    start = pd.Timestamp(since) if since else None
    dropped = dropped_since = 0
    for gap in read_gaps(settings):
        if gap.get("sink", "served") != "served":
            continue
        n = int(gap.get("records", 0))
        dropped += n
        last = gap.get("last_ts")
        if start is None or (last and pd.Timestamp(last) >= start):
            dropped_since += n
    return {
        "dropped": dropped,
        "dropped_in_period": dropped_since,
        "waiting_in_spill": pending_records(settings),
    }


def gap_reason(gaps: dict[str, Any]) -> str | None:
    """A reason line when the period's data is incomplete, else None."""
    if not gaps["dropped_in_period"] and not gaps["waiting_in_spill"]:
        return None
    return (
        f"data gap: {gaps['dropped_in_period']} served-log records lost in the period, "
        f"{gaps['waiting_in_spill']} not yet written (spill file)"
    )
