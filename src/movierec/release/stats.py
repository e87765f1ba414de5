"""The statistics of a release decision, with the user as the unit of analysis.

Users, not requests, are assigned to an arm, so a metric such as CTR is a ratio of per-user
sums (clicks / requests) and its variance comes from the spread between users
(`ratio_estimate`: the delta method, Deng et al. 2018, "Applying the delta method in metric
analytics"). Requests of one user are not independent; counting them as if they were gives
intervals that are too narrow.

The canary is compared with the stable by the relative lift of a ratio metric
(canary / stable - 1, `relative_lift`), with an always-valid confidence sequence
(`confidence_sequence`): the two-sided normal-mixture boundary of Robbins, in the form of
Howard et al. 2021 ("Time-uniform, nonparametric, nonasymptotic confidence sequences", eq. 14:
with information I = 1 / variance, sqrt((I + rho) log((I + rho) / (rho alpha^2))) / I), mixed
over several scales (`half_width`), and used with a plug-in variance as an asymptotic
confidence sequence (Waudby-Smith et al. 2021, "Time-uniform central limit theory and
asymptotic confidence sequences"). The interval covers the true lift at every look at once
with probability 1 - alpha, so the evaluator may look every few minutes without inflating its
error rate. The boundary is tightest at the information the power calculation plans for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from movierec.core.online_metrics import Interval


@dataclass(frozen=True)
class RatioEstimate:
    """sum(num) / sum(den) over units, with the delta-method variance of that ratio."""

    units: int
    value: float | None
    variance: float | None

    def wald(self, alpha: float) -> Interval:
        """A fixed-sample interval (for a look, not for a decision)."""
        if self.value is None or self.variance is None:
            return Interval(self.value)
        half = NormalDist().inv_cdf(1 - alpha / 2) * math.sqrt(self.variance)
        return Interval(self.value, self.value - half, self.value + half)


def ratio_estimate(num: npt.ArrayLike, den: npt.ArrayLike) -> RatioEstimate:
    """The ratio of per-unit sums and its variance, units as independent draws:
    Var(R) = Var(num - R den) / (n mean(den)^2)."""
    x = np.asarray(num, dtype=float)
    y = np.asarray(den, dtype=float)
    return ratio_from_sums(x.size, y.sum(), x.sum(), (y * y).sum(), (x * x).sum(), (x * y).sum())


def ratio_from_sums(
    n: int, den: float, num: float, den2: float, num2: float, cross: float
) -> RatioEstimate:
    """`ratio_estimate` from the sums over units of den, num, den^2, num^2 and num*den (what
    a vectorized simulation keeps). The residuals num - R den sum to zero, so their sample
    variance is (num2 - 2 R cross + R^2 den2) / (n - 1)."""
    if n == 0 or den <= 0:
        return RatioEstimate(int(n), None, None)
    r = float(num / den)
    if n < 2:
        return RatioEstimate(int(n), r, None)
    resid2 = max(num2 - 2.0 * r * cross + r * r * den2, 0.0)
    var = float(resid2 / (n - 1) / (n * (den / n) ** 2))
    return RatioEstimate(int(n), r, var)


def relative_lift(canary: RatioEstimate, stable: RatioEstimate) -> tuple[float, float] | None:
    """canary / stable - 1 and its delta-method variance (independent arms)."""
    if (
        canary.value is None
        or stable.value is None
        or canary.variance is None
        or stable.variance is None
        or stable.value <= 0
    ):
        return None
    rc, rs = canary.value, stable.value
    var = canary.variance / rs**2 + rc**2 * stable.variance / rs**4
    return rc / rs - 1.0, var


# The mixing distribution: half its weight at the planned scale (where the power calculation
# expects the decision), half spread evenly over scales 4^-6 .. 4^2 of it, so that the
# interval is not needlessly wide when the sample turns out far smaller (a small site: ml-100k
# has 943 users) or larger than planned. A mixture of test martingales is one: the interval
# stays valid at every look whatever the weights.
_SCALES = 4.0 ** np.arange(-6, 3)
_WEIGHTS = np.where(_SCALES == 1.0, 0.5, 0.5 / (_SCALES.size - 1))


def mixture_ratio(alpha: float) -> float:
    """rho / I at which a single normal mixture is tightest for a given information I
    (Howard et al. 2021, section 3.5): 1 / (-2 log alpha + log(1 - 2 log alpha))."""
    a = -2.0 * math.log(alpha)
    return 1.0 / (a + math.log(1.0 + a))


@lru_cache(maxsize=64)
def boundary_factor(alpha: float) -> float:
    """The half-width in standard errors at the planned information (scale-free: computed
    once per alpha)."""
    return float(half_width(1.0, alpha, mixture_ratio(alpha)))


def half_width(
    variance: npt.ArrayLike, alpha: float, rho: float
) -> npt.NDArray[np.float64] | float:
    """Half-width of the two-sided confidence sequence (vectorized): with information
    I = 1 / variance and S = (estimate - truth) I, the mixture over scales k of
    w_k sqrt(rho_k / (I + rho_k)) exp(S^2 / (2 (I + rho_k))) stays below 1 / alpha at every
    look with probability 1 - alpha (Ville); `rho` is the mixing precision at the planned
    scale. The S^2 where it reaches 1 / alpha is found by bisection."""
    info = np.atleast_1d(1.0 / np.asarray(variance, dtype=float))[:, None]
    rhos = rho * _SCALES[None, :]
    log_w = np.log(_WEIGHTS)[None, :] + 0.5 * np.log(rhos / (info + rhos))
    target = -math.log(alpha)
    # one scale alone reaching 1 / alpha bounds the root from above
    high = np.min(2.0 * (info + rhos) * (target - log_w), axis=1)
    low = np.zeros_like(high)
    for _ in range(60):
        mid = (low + high) / 2
        terms = log_w + mid[:, None] / (2.0 * (info + rhos))
        peak = terms.max(axis=1)
        log_m = peak + np.log(np.exp(terms - peak[:, None]).sum(axis=1))
        above = log_m >= target
        high = np.where(above, mid, high)
        low = np.where(above, low, mid)
    out = np.sqrt(high) / info[:, 0]
    return float(out[0]) if np.ndim(variance) == 0 else out


def confidence_sequence(estimate: float, variance: float, alpha: float, rho: float) -> Interval:
    """The always-valid interval of an estimate with (plug-in) variance `variance` (a zero
    variance, every unit alike, gives a zero-width interval)."""
    return confidence_sequences([estimate], [variance], alpha, rho)[0]


def confidence_sequences(
    estimates: Sequence[float], variances: Sequence[float | None], alpha: float, rho: float
) -> list[Interval]:
    """`confidence_sequence` of many estimates at once (one boundary computation)."""
    var = np.array([np.nan if v is None else v for v in variances], dtype=float)
    usable = var > 0
    half = np.zeros_like(var)
    if usable.any():
        half[usable] = half_width(var[usable], alpha, rho)
    out = []
    for est, v, h, ok in zip(estimates, var, half, usable, strict=True):
        if ok or v == 0:
            out.append(Interval(est, est - float(h), est + float(h)))
        else:
            out.append(Interval(est))
    return out


def planned_rho(margin: float, alpha: float, power: float) -> float:
    """The mixing precision at the information the power calculation plans for."""
    return mixture_ratio(alpha) * required_information(margin, alpha, power)


def required_information(margin: float, alpha: float, power: float) -> float:
    """Information (1 / variance of the lift) at which an equal canary's interval clears the
    margin with probability `power`: (c + z_power)^2 / margin^2, where c is the boundary's
    half-width in standard errors at that information."""
    z = NormalDist().inv_cdf(power)
    return ((boundary_factor(alpha) + z) / margin) ** 2


def lift_interval(
    canary: RatioEstimate, stable: RatioEstimate, margin: float, alpha: float, power: float
) -> Interval:
    """The always-valid interval of canary / stable - 1, its boundary tuned to the
    information the power calculation asks for."""
    lift = relative_lift(canary, stable)
    if lift is None:
        return Interval()
    return confidence_sequence(lift[0], lift[1], alpha, planned_rho(margin, alpha, power))


def unit_variance(stable: RatioEstimate) -> float:
    """One user's relative variance (Var / mean^2 of the linearized ratio), from an arm's
    estimate; with too little data, 1 (a Bernoulli request per user at rate 0.5)."""
    if stable.variance is None or not stable.value or stable.units < 2:
        return 1.0
    return float(stable.variance * stable.units / stable.value**2)


def required_users(
    margin: float, alpha: float, power: float, unit_variance: float, canary_share: float
) -> tuple[int, int]:
    """Users per arm (canary, stable) for that information when a fraction `canary_share` of
    users is in the canary; `unit_variance` is one user's relative variance (Var / mean^2 of
    the linearized metric, from the data). Lift variance = v (1/n_c + 1/n_s)."""
    info = required_information(margin, alpha, power)
    f = min(max(canary_share, 0.01), 0.99)
    canary = math.ceil(unit_variance * info / (1.0 - f))
    stable = math.ceil(unit_variance * info / f)
    return canary, stable
