"""Per-arm online metrics from served lists and what users did after them.

Clicks. A served recommendation counts as clicked when its user watches one of its movies
within the click window of event time after it was served: a viewing that starts then
(`watch_starts`), credited to the latest request before it that listed the movie (last
touch). Only requests old enough for their whole window to be observed ("mature": served at
least one window before the newest event) are counted, so a half-observed window never
lowers the CTR. The CTR's interval is over users (the unit of assignment): clicks and
requests are summed per user and the ratio's variance comes from the delta method.

Ratings. A rating of a recommended movie, made after the recommendation, counts once per arm.
Satisfaction: per arm, the mean rating of female users divided by that of male users (1.0:
both served equally well; by age group too, with intervals, in `release.fairness`). Online
RMSE: those ratings against the rating the arm's model predicted (when its model can be
loaded).

Watching. A clicked viewing's length is its number of minute lines; per arm, minutes per
viewing and the share of viewings of at least `completed_minutes` ("completed"), over
viewings that have ended (no line in the last few minutes of the event stream).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import NamedTuple

import numpy as np
import pandas as pd

from movierec.core.online_metrics import ArmMetrics
from movierec.release.fairness import group_satisfaction
from movierec.release.stats import ratio_estimate

VIEWING_GAP = timedelta(minutes=5)  # a pause longer than this starts a new viewing
Predictor = Callable[[np.ndarray, np.ndarray], np.ndarray]
PER_USER_COLUMNS = ("user_id", "requests", "clicks", "ratings", "rating_sum")


@dataclass
class ArmData:
    """An arm's metrics and its per-user sums (the units of the statistics)."""

    metrics: ArmMetrics
    per_user: pd.DataFrame  # PER_USER_COLUMNS


class ArmEvents(NamedTuple):
    """What an arm is measured from: its served records (already restricted to the period),
    the watches and ratings that followed, and the users table (their genders)."""

    served: pd.DataFrame
    watches: pd.DataFrame
    ratings: pd.DataFrame
    users: pd.DataFrame


@dataclass(frozen=True)
class ArmLook:
    """How an arm is measured: its click window, its name and version, the model's predicted
    ratings (for the online RMSE), the minutes of a completed viewing, the intervals' alpha."""

    window: timedelta
    arm: str
    model_version: str | None
    predict: Predictor | None = None
    completed_minutes: float = 60.0
    alpha: float = 0.05


def observe_arm(events: ArmEvents, look: ArmLook) -> ArmData:
    """Metrics and per-user sums of one arm's served records."""
    served, watches, ratings, users = events
    window, alpha = look.window, look.alpha
    m = ArmMetrics(arm=look.arm, model_version=look.model_version, requests=len(served))
    if served.empty:
        return ArmData(m, pd.DataFrame(columns=list(PER_USER_COLUMNS)))
    ok = served[served["status"] == 200]
    _add_errors_and_latency(m, served)
    m.recommendations = int(ok["items"].map(len).sum())
    gender = users.set_index("user_id")["gender"] if len(users) else pd.Series(dtype=str)
    clicks = _add_clicks(m, ok, watches, gender, window)
    _add_watching(m, clicks, watches, look.completed_minutes)
    rated = _add_satisfaction(m, ok, ratings, gender)
    _add_rmse(m, rated, look.predict)
    per_user = _per_user(clicks, rated)
    _add_ctr_interval(m, per_user, alpha)
    m.satisfaction_by_group = group_satisfaction(per_user, users, alpha)
    return ArmData(m, per_user)


def _add_errors_and_latency(m: ArmMetrics, served: pd.DataFrame) -> None:
    m.errors = int((served["status"] >= 500).sum())
    m.error_rate = m.errors / len(served)
    lat = served["latency_ms"].dropna().to_numpy(dtype=float)
    if lat.size:
        m.latency_p50_ms, m.latency_p95_ms, m.latency_p99_ms = (
            float(v) for v in np.percentile(lat, [50, 95, 99])
        )


@dataclass
class _Clicks:
    mature: pd.DataFrame  # mature requests
    by_request: pd.Series  # request_id -> clicked
    matched: pd.DataFrame  # credited (request, movie) hits with event_ts


def mature_requests(ok: pd.DataFrame, watches: pd.DataFrame, window: timedelta) -> pd.DataFrame:
    """Requests served at least one window before the newest event."""
    newest_event = watches["ts"].max() if len(watches) else None
    return ok if newest_event is None else ok[ok["ts"] <= newest_event - window]


def _add_clicks(
    m: ArmMetrics, ok: pd.DataFrame, watches: pd.DataFrame, gender: pd.Series, window: timedelta
) -> _Clicks:
    """Mature requests, clicks, CTR (overall and by gender) and clicked recommendations."""
    mature = mature_requests(ok, watches, window)
    m.mature_requests = len(mature)
    clicked = _last_touch(match_after(explode_items(mature), watch_starts(watches), window))
    by_request = (
        clicked.groupby("request_id")["hit"].any() if len(clicked) else pd.Series(dtype=bool)
    )
    m.clicks = int(by_request.sum()) if len(by_request) else 0
    m.ctr = m.clicks / m.mature_requests if m.mature_requests else None
    m.interactions = int(clicked["hit"].sum()) if len(clicked) else 0
    if len(by_request):
        req_gender = mature.set_index("request_id")["user_id"].map(gender)
        for g in ("F", "M"):
            ids = req_gender[req_gender == g].index
            hits = by_request.reindex(ids).fillna(False)
            m.ctr_by_gender[g] = float(hits.mean()) if len(hits) else None
    credited = clicked[clicked["hit"]] if len(clicked) else clicked
    return _Clicks(mature, by_request, credited)


def _add_satisfaction(
    m: ArmMetrics, ok: pd.DataFrame, ratings: pd.DataFrame, gender: pd.Series
) -> pd.DataFrame:
    """Ratings of recommended movies made after the recommendation, each counted once; mean
    rating by gender, and female / male. Returns the rated (user_id, movie_id, rating)."""
    rated = match_after(explode_items(ok), ratings.rename(columns={"timestamp": "ts"}), None)
    rated = rated[rated["hit"]]
    if len(rated):
        rated = rated.drop_duplicates(["user_id", "movie_id", "event_ts"])
    m.quality_events = len(rated)
    if not len(rated):
        return pd.DataFrame(columns=["user_id", "movie_id", "rating"])
    rated = rated.assign(gender=rated["user_id"].map(gender))
    means = rated.groupby("gender")["rating"].mean()
    m.mean_rating_female = _float_or_none(means.get("F"))
    m.mean_rating_male = _float_or_none(means.get("M"))
    if m.mean_rating_female is not None and m.mean_rating_male:
        m.female_male_rating_ratio = m.mean_rating_female / m.mean_rating_male
    return rated[["user_id", "movie_id", "rating"]]


def _add_rmse(m: ArmMetrics, rated: pd.DataFrame, predict: Predictor | None) -> None:
    """Online RMSE: the ratings users gave after a recommendation against the prediction."""
    if predict is None or rated.empty:
        return
    predicted = predict(
        rated["user_id"].to_numpy(dtype="int64"), rated["movie_id"].astype(str).to_numpy()
    )
    err = np.asarray(predicted, dtype=float) - rated["rating"].to_numpy(dtype=float)
    m.rmse_ratings = int(err.size)
    m.online_rmse = float(np.sqrt(np.mean(err**2)))


def _add_watching(
    m: ArmMetrics, clicks: _Clicks, watches: pd.DataFrame, completed_minutes: float
) -> None:
    """Minutes per clicked viewing and the share of completed ones (ended viewings only)."""
    if clicks.matched.empty or watches.empty:
        return
    views = viewings(watches)
    ended = views[views["last_ts"] <= watches["ts"].max() - VIEWING_GAP]
    keys = clicks.matched[["user_id", "movie_id", "event_ts"]].drop_duplicates()
    mine = ended.merge(
        keys.rename(columns={"event_ts": "start_ts"}), on=["user_id", "movie_id", "start_ts"]
    )
    m.viewings = len(mine)
    if len(mine):
        m.minutes_per_viewing = float(mine["minutes"].mean())
        m.completed_share = float((mine["minutes"] >= completed_minutes).mean())


def _per_user(clicks: _Clicks, rated: pd.DataFrame) -> pd.DataFrame:
    """Per user: mature requests, clicked requests, ratings of recommended movies and their
    sum."""
    mature = clicks.mature
    hit = mature["request_id"].map(clicks.by_request).fillna(False).astype(bool)
    per = (
        mature.assign(clicks=hit.astype(int))
        .groupby("user_id")
        .agg(requests=("request_id", "size"), clicks=("clicks", "sum"))
    )
    rates = rated.groupby("user_id")["rating"].agg(ratings="size", rating_sum="sum")
    out = per.join(rates, how="outer").fillna(0).reset_index()
    out["user_id"] = out["user_id"].astype("int64")
    return out[list(PER_USER_COLUMNS)]


def _add_ctr_interval(m: ArmMetrics, per_user: pd.DataFrame, alpha: float) -> None:
    units = per_user[per_user["requests"] > 0]
    m.users = len(units)
    est = ratio_estimate(units["clicks"], units["requests"]).wald(alpha)
    m.ctr_low, m.ctr_high = est.low, est.high


def _float_or_none(v: float | None) -> float | None:
    return None if v is None or math.isnan(v) else float(v)


def explode_items(served: pd.DataFrame) -> pd.DataFrame:
    """One row per (request, recommended movie)."""
    if served.empty:
        return pd.DataFrame(columns=["request_id", "user_id", "ts", "movie_id"])
    out = served[["request_id", "user_id", "ts", "items"]].explode("items")
    out = out.rename(columns={"items": "movie_id"}).dropna(subset=["movie_id"])
    out["user_id"] = out["user_id"].astype("int64")
    out["movie_id"] = out["movie_id"].astype(str)
    return out


def match_after(recs: pd.DataFrame, events: pd.DataFrame, window: timedelta | None) -> pd.DataFrame:
    """For each recommended (user, movie, ts): the first event of that user and movie at or
    after ts (within `window` if given). Adds `hit` and, when events carry one, `rating`."""
    if recs.empty:
        return recs.assign(hit=pd.Series(dtype=bool), event_ts=pd.Series(dtype=object))
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


def watch_starts(watches: pd.DataFrame, gap: timedelta = VIEWING_GAP) -> pd.DataFrame:
    """The first line of each viewing: minute 0 of a movie (pressing play on it), or a line of
    a (user, movie) with no line of the same pair in the `gap` before it (a resumed viewing).
    A click is starting to watch, not each later minute."""
    if watches.empty:
        return watches
    w = watches.sort_values("ts", kind="stable")
    return w[_starts(w, gap)]


def _starts(w: pd.DataFrame, gap: timedelta) -> pd.Series:
    """Which lines of `w` start a viewing (the lines of each (user, movie) in time order)."""
    prev = w.groupby(["user_id", "movie_id"], sort=False)["ts"].shift()
    start = prev.isna() | (w["ts"] - prev > gap)
    if "minute" in w.columns:
        start |= w["minute"] == 0
    return start


def viewings(watches: pd.DataFrame, gap: timedelta = VIEWING_GAP) -> pd.DataFrame:
    """One row per viewing: user_id, movie_id, start_ts, last_ts, minutes (its lines)."""
    w = watches.sort_values(["user_id", "movie_id", "ts"], kind="stable").reset_index(drop=True)
    vid = _starts(w, gap).astype(int).cumsum()  # rows of a pair are in time order
    grouped = w.groupby(vid)
    return pd.DataFrame(
        {
            "user_id": grouped["user_id"].first().astype("int64"),
            "movie_id": grouped["movie_id"].first().astype(str),
            "start_ts": grouped["ts"].min(),
            "last_ts": grouped["ts"].max(),
            "minutes": grouped["ts"].size(),
        }
    ).reset_index(drop=True)


def _last_touch(matched: pd.DataFrame) -> pd.DataFrame:
    """A watch is credited to the latest request before it that listed the movie: a user
    who asked twice and watched once clicked once, not twice."""
    if matched.empty:
        return matched
    hits = matched[matched["hit"]].sort_values("ts")
    earlier = hits.index[hits.duplicated(["user_id", "movie_id", "event_ts"], keep="last")]
    return matched.assign(hit=matched["hit"] & ~matched.index.isin(earlier))
