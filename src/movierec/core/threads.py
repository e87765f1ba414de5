"""Thread pools on a shared machine.

XGBoost and `implicit` run OpenMP thread pools. By default an OpenMP thread that waits at a
barrier spins; when another process holds the second core, the spinning thread burns its time
slice while the thread it waits for is not running, and every boosting round costs several
times its work (measured on ml-100k with the two cores shared: training with tuning 230 s wall
with spinning, 62 s with sleeping threads). Entry points that train therefore ask OpenMP to
sleep while waiting, unless the operator set a policy.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}


def share_cores(env: MutableMapping[str, str] | None = None) -> None:
    """Set the OpenMP defaults in `env` (the process environment by default) where unset.
    Call it before XGBoost or `implicit` is imported: OpenMP reads it once, when loaded."""
    target = os.environ if env is None else env
    for name, value in OPENMP_DEFAULTS.items():
        target.setdefault(name, value)
