"""Per-arm online metrics from served lists and what users did after them.

Clicks. A served recommendation counts as clicked when its user watches one of its movies
within the click window of event time after it was served: a viewing that starts then
(`watch_starts`), credited to the latest request before it that listed the movie (last
touch). Only requests old enough for their whole window to be observed ("mature": served at
least one window before the newest event) are counted, so a half-observed window never
lowers the CTR.

Satisfaction. Per arm, the mean rating that female users gave to movies recommended to them
divided by the mean rating of male users (ratings made after the recommendation, in the
period); 1.0 means both genders are served equally well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

ARMS = ("stable", "canary")


@dataclass
class ArmMetrics:
    """What one arm did in the period."""

    arm: str
    model_version: str | None
    requests: int = 0
    recommendations: int = 0
    mature_requests: int = 0
    clicks: int = 0
    ctr: float | None = None
    errors: int = 0
    error_rate: float = 0.0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    interactions: int = 0
    quality_events: int = 0
    mean_rating_female: float | None = None
    mean_rating_male: float | None = None
    satisfaction_ratio: float | None = None
    ctr_by_gender: dict[str, float | None] = field(default_factory=dict)


def compute_arm_metrics(
    served: pd.DataFrame,
    watches: pd.DataFrame,
    ratings: pd.DataFrame,
    users: pd.DataFrame,
    *,
    window: timedelta,
    arm: str,
    model_version: str | None,
) -> ArmMetrics:
    """Metrics of one arm's served records (already restricted to the period)."""
    m = ArmMetrics(arm=arm, model_version=model_version, requests=len(served))
    if served.empty:
        return m
    ok = served[served["status"] == 200]
    _add_errors_and_latency(m, served)
    m.recommendations = int(ok["items"].map(len).sum())
    gender = users.set_index("user_id")["gender"] if len(users) else pd.Series(dtype=str)
    _add_clicks(m, ok, watches, gender, window)
    _add_satisfaction(m, ok, ratings, gender)
    return m


def _add_errors_and_latency(m: ArmMetrics, served: pd.DataFrame) -> None:
    m.errors = int((served["status"] >= 500).sum())
    m.error_rate = m.errors / len(served)
    lat = served["latency_ms"].dropna().to_numpy(dtype=float)
    if lat.size:
        m.latency_p50_ms, m.latency_p95_ms, m.latency_p99_ms = (
            float(v) for v in np.percentile(lat, [50, 95, 99])
        )


def _add_clicks(
    m: ArmMetrics, ok: pd.DataFrame, watches: pd.DataFrame, gender: pd.Series, window: timedelta
) -> None:
    """Mature requests, clicks, CTR (overall and by gender) and clicked recommendations."""
    newest_event = watches["ts"].max() if len(watches) else None
    mature = ok if newest_event is None else ok[ok["ts"] <= newest_event - window]
    m.mature_requests = len(mature)
    clicked = _last_touch(_match_after(_explode(mature), watch_starts(watches), window))
    by_request = clicked.groupby("request_id")["hit"].any() if len(clicked) else pd.Series()
    m.clicks = int(by_request.sum()) if len(by_request) else 0
    m.ctr = m.clicks / m.mature_requests if m.mature_requests else None
    m.interactions = int(clicked["hit"].sum()) if len(clicked) else 0
    if len(by_request):
        req_gender = mature.set_index("request_id")["user_id"].map(gender)
        for g in ("F", "M"):
            ids = req_gender[req_gender == g].index
            hits = by_request.reindex(ids).fillna(False)
            m.ctr_by_gender[g] = float(hits.mean()) if len(hits) else None


def _add_satisfaction(
    m: ArmMetrics, ok: pd.DataFrame, ratings: pd.DataFrame, gender: pd.Series
) -> None:
    """Mean rating of recommended movies by gender, and female / male."""
    rated = _match_after(_explode(ok), ratings.rename(columns={"timestamp": "ts"}), None)
    rated = rated[rated["hit"]]
    m.quality_events = len(rated)
    if not len(rated):
        return
    rated = rated.assign(gender=rated["user_id"].map(gender))
    means = rated.groupby("gender")["rating"].mean()
    m.mean_rating_female = _float_or_none(means.get("F"))
    m.mean_rating_male = _float_or_none(means.get("M"))
    if m.mean_rating_female is not None and m.mean_rating_male:
        m.satisfaction_ratio = m.mean_rating_female / m.mean_rating_male


def _float_or_none(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _explode(served: pd.DataFrame) -> pd.DataFrame:
    """One row per (request, recommended movie)."""
    if served.empty:
        return pd.DataFrame(columns=["request_id", "user_id", "ts", "movie_id"])
    out = served[["request_id", "user_id", "ts", "items"]].explode("items")
    out = out.rename(columns={"items": "movie_id"}).dropna(subset=["movie_id"])
    out["user_id"] = out["user_id"].astype("int64")
    out["movie_id"] = out["movie_id"].astype(str)
    return out


def _match_after(
    recs: pd.DataFrame, events: pd.DataFrame, window: timedelta | None
) -> pd.DataFrame:
    """For each recommended (user, movie, ts): the first event of that user and movie at or
    after ts (within `window` if given). Adds `hit` and, when events carry one, `rating`."""
    if recs.empty:
        return recs.assign(hit=pd.Series(dtype=bool))
    left = recs.sort_values("ts").reset_index(drop=True)
    cols = ["ts", "user_id", "movie_id"] + (["rating"] if "rating" in events.columns else [])
    right = events[cols].copy() if len(events) else pd.DataFrame(columns=cols)
    right["user_id"] = right["user_id"].astype("int64")
    right["movie_id"] = right["movie_id"].astype(str)
    right["ts"] = pd.to_datetime(right["ts"], utc=True)
    left["ts"] = left["ts"].astype(right["ts"].dtype)
    right = right.assign(event_ts=right["ts"]).sort_values("ts").reset_index(drop=True)
    merged = pd.merge_asof(
        left,
        right,
        on="ts",
        by=["user_id", "movie_id"],
        direction="forward",
        tolerance=pd.Timedelta(window) if window is not None else None,
    )
    return merged.assign(hit=merged["event_ts"].notna())


def watch_starts(watches: pd.DataFrame, gap: timedelta = timedelta(minutes=5)) -> pd.DataFrame:
    """The first line of each viewing: minute 0 of a movie (pressing play on it), or a line of
    a (user, movie) with no line of the same pair in the `gap` before it (a resumed viewing).
    A click is starting to watch, not each later minute."""
    if watches.empty:
        return watches
    w = watches.sort_values("ts", kind="stable")
    prev = w.groupby(["user_id", "movie_id"], sort=False)["ts"].shift()
    start = prev.isna() | (w["ts"] - prev > gap)
    if "minute" in w.columns:
        start |= w["minute"] == 0
    return w[start]


def _last_touch(matched: pd.DataFrame) -> pd.DataFrame:
    """A watch is credited to the latest request before it that listed the movie: a user
    who asked twice and watched once clicked once, not twice."""
    if matched.empty:
        return matched
    hits = matched[matched["hit"]].sort_values("ts")
    earlier = hits.index[hits.duplicated(["user_id", "movie_id", "event_ts"], keep="last")]
    return matched.assign(hit=matched["hit"] & ~matched.index.isin(earlier))
