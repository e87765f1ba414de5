"""The shadow stage's evidence: on the same live requests, how often the user later watched
what stable served and what the candidate would have served.

The service logs, for a sample of stable's requests, the candidate's list beside stable's
(`serve.shadow`). A list is hit when its user starts watching one of its movies within the
click window after the request. The comparison is paired (same requests, same users), so the
spread between users cancels out; the unit is still the user: hits are summed per user and
the ratio candidate hits / stable hits gets an always-valid interval over users.

The comparison leans towards stable: the user saw stable's list, not the candidate's, so a
movie only the candidate listed is watched only if the user found it elsewhere. An equally
good candidate therefore scores below 1; the shadow gate only stops candidates far worse
(`shadow_min_ratio`), and the canary stage decides the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

from movierec.release.online import explode_items, match_after, mature_requests, watch_starts
from movierec.release.stats import confidence_sequence, ratio_estimate


@dataclass
class ShadowMetrics:
    """What the shadow candidate would have done on the sampled requests of the period."""

    candidate: str | None
    requests: int = 0
    mature_requests: int = 0
    users: int = 0
    stable_hits: int = 0
    candidate_hits: int = 0
    stable_hit_rate: float | None = None
    candidate_hit_rate: float | None = None
    ratio: float | None = None
    ratio_low: float | None = None
    ratio_high: float | None = None
    overlap: float | None = None
    empty_lists: int = 0
    latency_p99_ms: float | None = None


def shadow_metrics(
    shadow: pd.DataFrame,
    watches: pd.DataFrame,
    *,
    window: timedelta,
    candidate: str | None,
    alpha: float,
    rho: float,
) -> ShadowMetrics:
    """Paired hit rates of stable's and the candidate's lists on the same mature requests,
    and the always-valid interval of their ratio (`rho`: see `stats.confidence_sequence`)."""
    m = ShadowMetrics(candidate=candidate, requests=len(shadow))
    if shadow.empty:
        return m
    m.empty_lists = int((shadow["items"].map(len) == 0).sum())
    lat = shadow["latency_ms"].dropna().to_numpy(dtype=float)
    m.latency_p99_ms = float(np.percentile(lat, 99)) if lat.size else None
    mature = mature_requests(shadow, watches, window)
    m.mature_requests = len(mature)
    if mature.empty:
        return m
    starts = watch_starts(watches)
    hit_s = _hits(mature, "served_items", starts, window)
    hit_c = _hits(mature, "items", starts, window)
    per_user = (
        pd.DataFrame({"user_id": mature["user_id"].to_numpy(), "s": hit_s, "c": hit_c})
        .groupby("user_id")[["s", "c"]]
        .sum()
    )
    m.users = len(per_user)
    m.stable_hits, m.candidate_hits = int(hit_s.sum()), int(hit_c.sum())
    m.stable_hit_rate = m.stable_hits / len(mature)
    m.candidate_hit_rate = m.candidate_hits / len(mature)
    m.overlap = float(
        np.mean(
            [_overlap(a, b) for a, b in zip(mature["items"], mature["served_items"], strict=True)]
        )
    )
    est = ratio_estimate(per_user["c"], per_user["s"])
    m.ratio = est.value
    if est.value is not None and est.variance is not None:
        interval = confidence_sequence(est.value, est.variance, alpha, rho)
        m.ratio_low, m.ratio_high = interval.low, interval.high
    return m


def _hits(mature: pd.DataFrame, column: str, starts: pd.DataFrame, window: timedelta) -> np.ndarray:
    """Per request (in `mature`'s order): did the user start a movie of that list in time."""
    frame = mature[["request_id", "user_id", "ts", column]].rename(columns={column: "items"})
    matched = match_after(explode_items(frame), starts, window)
    if matched.empty:
        return np.zeros(len(mature), dtype=int)
    hit = matched.groupby("request_id")["hit"].any()
    return mature["request_id"].map(hit).fillna(False).to_numpy(dtype=int)


def _overlap(candidate: list[str], served: list[str]) -> float:
    return len(set(candidate) & set(served)) / len(candidate) if candidate else 0.0
