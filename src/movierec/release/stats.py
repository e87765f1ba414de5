"""Statistics of the release decision: the canary's CTR against the stable's."""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats


@dataclass
class Comparison:
    """Canary vs stable CTR: a two-proportion z-test and a 95% interval of the difference."""

    diff: float | None = None
    z: float | None = None
    p_value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None


def two_proportion_test(x1: int, n1: int, x2: int, n2: int) -> Comparison:
    """z-test of p1 - p2 (pooled variance) and a 95% Wald interval of the difference."""
    if n1 == 0 or n2 == 0:
        return Comparison()
    p1, p2 = x1 / n1, x2 / n2
    pooled = (x1 + x2) / (n1 + n2)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    diff = p1 - p2
    z = diff / se_pooled if se_pooled > 0 else 0.0
    p_value = float(2 * stats.norm.sf(abs(z)))
    return Comparison(diff, z, p_value, diff - 1.96 * se, diff + 1.96 * se)
