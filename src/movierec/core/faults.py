"""Fault injection for tests: kill this process at a named point, to show that a crash there
loses nothing and changes nothing.

Not a setting: a test arms a point through the environment of the process it starts,

    MOVIEREC_FAULT=ingest.after-parts:3     (the 3rd time the point is reached)
    MOVIEREC_FAULT=retrain.train            (the 1st time)

and the job calls `fault_point("ingest.after-parts")` where a crash would hurt most. Several
points can be armed at once, separated by commas. Unarmed, a point costs one dictionary lookup.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)

FAULT_ENV = "MOVIEREC_FAULT"

_reached: dict[str, int] = {}


def armed() -> dict[str, int]:
    """Armed points and the visit that kills (1-based), from MOVIEREC_FAULT."""
    out: dict[str, int] = {}
    for item in os.environ.get(FAULT_ENV, "").split(","):
        name, _, nth = item.strip().partition(":")
        if name:
            out[name] = int(nth or 1)
    return out


def fault_point(name: str) -> None:
    """SIGKILL this process if `name` is armed and this is the visit it names."""
    points = armed()
    if name not in points:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] == points[name]:
        log.warning("fault injection: killing the process at %s (visit %d)", name, _reached[name])
        os.kill(os.getpid(), signal.SIGKILL)
