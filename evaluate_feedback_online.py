#!/usr/bin/env python3
"""Online evaluation of the canary (the same as `movierec release evaluate`).

Reads the served log, the shadow log and the event stream; measures the candidate's stage
(shadow: paired hit rates; canary: per-user CTR with an always-valid interval of the lift,
errors, latency, fairness by gender and age group, online RMSE, watch completion) and decides
RAMP / HOLD / ABORT / PROMOTE; the decision goes to `logs/feedback_events.json`, the metrics to
`logs/online_metrics.json`, and routing.json is updated. Run it by hand or on a schedule;
running it twice on the same data decides once.

Exit codes: 0 evaluated (RAMP, HOLD, PROMOTE or nothing to release), 3 the decision was ABORT,
1 error, 2 bad usage.
"""

from __future__ import annotations

import sys

from movierec.cli import main

if __name__ == "__main__":
    sys.exit(main(["release", "evaluate", *sys.argv[1:]]))
