"""The online evaluator: per-arm metrics from the served log and the event stream, and the
release decision RAMP / HOLD / ABORT / PROMOTE that moves the canary.

Clicks. A served recommendation counts as clicked when its user watches one of its movies
within `click_window_minutes` of event time after it was served: a viewing that starts then
(`watch_starts`), credited to the latest request before it that listed the movie (last
touch). Only requests old enough for their whole window to be observed ("mature": served at
least one window before the newest event) are counted, so a half-observed window never
lowers the CTR.

Satisfaction. Per arm, the mean rating that female users gave to movies recommended to them
divided by the mean rating of male users (ratings made after the recommendation, in the
period); 1.0 means both genders are served equally well.

Period. A decision looks only at requests served since the routing last changed
(`routing.updated_at`), by the versions routing names now, so stable and canary are compared
over the same period and each ramp step is judged on its own traffic. A decision is keyed by
the data watermark (newest served request, newest event): running the evaluator twice on the
same data makes no second decision.
"""

from __future__ import annotations

import enum
import json
import logging
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from movierec.core.errors import DataNotFoundError
from movierec.core.files import atomic_write_json, exclusive_lock, read_json, sha256_bytes
from movierec.core.settings import Settings
from movierec.data.ingest import ingest
from movierec.data.lake import load_lake
from movierec.data.movielens import load_tables
from movierec.registry.routing import abort_canary, promote_canary, read_routing, write_routing
from movierec.release.datagaps import gap_reason, served_log_gaps

log = logging.getLogger(__name__)

ARMS = ("stable", "canary")


class Decision(enum.StrEnum):
    RAMP = "RAMP"
    HOLD = "HOLD"
    ABORT = "ABORT"
    PROMOTE = "PROMOTE"
    NONE = "NONE"  # no canary to evaluate


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


@dataclass
class Comparison:
    """Canary vs stable CTR: a two-proportion z-test and a 95% interval of the difference."""

    diff: float | None = None
    z: float | None = None
    p_value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None


@dataclass
class ReleaseResult:
    decision: Decision
    reasons: list[str]
    pct_before: int
    pct_after: int
    stable: str | None
    canary: str | None
    arms: dict[str, ArmMetrics]
    comparison: Comparison
    period_start: str | None
    key: str
    applied: bool
    repeated: bool = False
    data_gaps: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out["decision"] = str(self.decision)
        return out


# ---- inputs ---------------------------------------------------------------------------------


def feedback_events_file(settings: Settings) -> Path:
    return settings.logs_path / "feedback_events.json"


def online_metrics_file(settings: Settings) -> Path:
    return settings.logs_path / "online_metrics.json"


def served_log_files(settings: Settings) -> list[Path]:
    """The served log and its daily-rotated siblings, oldest first."""
    stem = settings.served_log_file.stem
    return sorted(settings.served_log_file.parent.glob(f"{stem}*.jsonl"))


def load_served(files: Iterable[Path]) -> pd.DataFrame:
    """Served records as a frame: request_id, ts (UTC), user_id, arm, model_version, items
    (list of ids), latency_ms, status. Corrupt lines are skipped with a warning."""
    rows: list[dict[str, Any]] = []
    bad = 0
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    bad += 1
    if bad:
        log.warning("skipped %d unreadable served-log lines", bad)
    cols = ["request_id", "ts", "user_id", "arm", "model_version", "items", "latency_ms", "status"]
    frame = pd.DataFrame(rows, columns=cols)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
    frame["items"] = frame["items"].map(_as_list)
    frame["status"] = pd.to_numeric(frame["status"], errors="coerce").fillna(0).astype(int)
    frame["latency_ms"] = pd.to_numeric(frame["latency_ms"], errors="coerce")
    frame["user_id"] = pd.to_numeric(frame["user_id"], errors="coerce")
    return frame


def _as_list(items: Any) -> list[str]:
    if isinstance(items, list):
        return [str(i) for i in items]
    if isinstance(items, str) and items:
        return items.split(",")
    return []


# ---- metrics --------------------------------------------------------------------------------


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
    m.errors = int((served["status"] >= 500).sum())
    m.error_rate = m.errors / len(served)
    lat = served["latency_ms"].dropna().to_numpy(dtype=float)
    if lat.size:
        m.latency_p50_ms, m.latency_p95_ms, m.latency_p99_ms = (
            float(v) for v in np.percentile(lat, [50, 95, 99])
        )
    m.recommendations = int(ok["items"].map(len).sum())

    newest_event = watches["ts"].max() if len(watches) else None
    mature = ok if newest_event is None else ok[ok["ts"] <= newest_event - window]
    m.mature_requests = len(mature)
    exploded = _explode(mature)
    clicked = _last_touch(_match_after(exploded, watch_starts(watches), window))
    by_request = clicked.groupby("request_id")["hit"].any() if len(clicked) else pd.Series()
    m.clicks = int(by_request.sum()) if len(by_request) else 0
    m.ctr = m.clicks / m.mature_requests if m.mature_requests else None
    m.interactions = int(clicked["hit"].sum()) if len(clicked) else 0

    gender = users.set_index("user_id")["gender"] if len(users) else pd.Series(dtype=str)
    if len(by_request):
        req_gender = mature.set_index("request_id")["user_id"].map(gender)
        for g in ("F", "M"):
            ids = req_gender[req_gender == g].index
            hits = by_request.reindex(ids).fillna(False)
            m.ctr_by_gender[g] = float(hits.mean()) if len(hits) else None

    rated = _match_after(_explode(ok), ratings.rename(columns={"timestamp": "ts"}), None)
    rated = rated[rated["hit"]]
    m.quality_events = len(rated)
    if len(rated):
        rated = rated.assign(gender=rated["user_id"].map(gender))
        means = rated.groupby("gender")["rating"].mean()
        m.mean_rating_female = _float_or_none(means.get("F"))
        m.mean_rating_male = _float_or_none(means.get("M"))
        if m.mean_rating_female is not None and m.mean_rating_male:
            m.satisfaction_ratio = m.mean_rating_female / m.mean_rating_male
    return m


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


# ---- the decision ---------------------------------------------------------------------------


def decide(
    settings: Settings,
    pct: int,
    canary: ArmMetrics,
    stable_ctr: float | None,
    stable_requests: int,
) -> tuple[Decision, list[str]]:
    """Guardrails first (they abort on any evidence), then sample size, then ramp/promote."""
    reasons: list[str] = []
    if canary.requests and canary.error_rate > settings.release.max_error_rate:
        reasons.append(
            f"canary error rate {canary.error_rate:.3%} > {settings.release.max_error_rate:.3%}"
        )
    p99 = canary.latency_p99_ms
    if p99 is not None and p99 > settings.release.max_p99_latency_ms:
        reasons.append(
            f"canary p99 latency {p99:.0f} ms > {settings.release.max_p99_latency_ms:.0f} ms"
        )
    enough = canary.mature_requests >= settings.release.min_samples_per_arm and (
        stable_requests >= settings.release.min_samples_per_arm or pct == 100
    )
    if reasons:
        return Decision.ABORT, reasons
    if not enough:
        return Decision.HOLD, [
            f"too few samples: canary {canary.mature_requests}, stable {stable_requests} "
            f"(need {settings.release.min_samples_per_arm} each)"
        ]
    ctr = canary.ctr or 0.0
    if ctr < settings.release.ctr_min_abs:
        reasons.append(f"canary CTR {ctr:.3f} < {settings.release.ctr_min_abs:.3f}")
    if stable_ctr is not None and ctr < settings.release.ctr_min_rel * stable_ctr:
        reasons.append(
            f"canary CTR {ctr:.3f} < {settings.release.ctr_min_rel:.0%} of stable's "
            f"{stable_ctr:.3f}"
        )
    ratio = canary.satisfaction_ratio
    if (
        ratio is not None
        and not settings.release.satisfaction_low <= ratio <= settings.release.satisfaction_high
    ):
        reasons.append(
            f"satisfaction ratio {ratio:.3f} outside "
            f"[{settings.release.satisfaction_low}, {settings.release.satisfaction_high}]"
        )
    if reasons:
        return Decision.ABORT, reasons
    if pct >= 100:
        return Decision.PROMOTE, ["canary healthy at 100%"]
    return Decision.RAMP, [f"canary healthy at {pct}% (CTR {ctr:.3f} vs stable {stable_ctr})"]


def evaluate_release(
    settings: Settings, *, apply: bool = True, refresh: bool = True
) -> ReleaseResult:
    """Read the logs, compute per-arm metrics, decide, and (with `apply`) move the canary."""
    with exclusive_lock(settings.data_path / "release.lock", wait=True):
        return _evaluate_locked(settings, apply=apply, refresh=refresh)


def _evaluate_locked(settings: Settings, *, apply: bool, refresh: bool) -> ReleaseResult:

    if refresh:
        ingest(settings)
    routing = read_routing(settings)
    if routing is None:
        raise_no_routing(settings)
    assert routing is not None
    lake = load_lake(settings)
    users = _users(settings)
    served = load_served(served_log_files(settings))
    start = pd.Timestamp(routing.updated_at)
    period = served[served["ts"] >= start] if len(served) else served
    window = timedelta(minutes=settings.release.click_window_minutes)
    arms: dict[str, ArmMetrics] = {}
    for arm, version in (("stable", routing.stable), ("canary", routing.canary)):
        rows = period[(period["arm"] == arm) & (period["model_version"] == version)]
        arms[arm] = compute_arm_metrics(
            rows,
            lake.watches,
            lake.ratings,
            users,
            window=window,
            arm=arm,
            model_version=version,
        )
    stable, canary = arms["stable"], arms["canary"]
    # at 100% stable serves only the stragglers of the switch: its reference is what it did
    # before, measured on enough requests
    enough_stable = stable.mature_requests >= settings.release.min_samples_per_arm
    stable_ctr = stable.ctr if enough_stable else _last_stable_ctr(settings, routing.stable)
    comparison = two_proportion_test(
        canary.clicks, canary.mature_requests, stable.clicks, stable.mature_requests
    )
    newest_served = str(served["ts"].max()) if len(served) else None
    newest_event = str(lake.watches["ts"].max()) if len(lake.watches) else None
    # the data watermark: the same logs decide once, whatever the routing became since
    key = sha256_bytes(json.dumps([newest_served, newest_event], default=str).encode())[:16]

    if routing.canary is None:
        decision, reasons = Decision.NONE, ["no canary: nothing to release"]
    else:
        decision, reasons = decide(
            settings, routing.canary_pct, canary, stable_ctr, stable.mature_requests
        )
    pct_after = routing.canary_pct
    result = ReleaseResult(
        decision=decision,
        reasons=reasons,
        pct_before=routing.canary_pct,
        pct_after=pct_after,
        stable=routing.stable,
        canary=routing.canary,
        arms=arms,
        comparison=comparison,
        period_start=routing.updated_at,
        key=key,
        applied=False,
        data_gaps=served_log_gaps(settings, routing.updated_at),
    )
    gap = gap_reason(result.data_gaps)
    if gap:
        result.reasons.append(gap)
    atomic_write_json(online_metrics_file(settings), _metrics_record(result))
    history = read_json(feedback_events_file(settings), default=[])
    if any(e.get("key") == key for e in history):
        result.repeated = True
        log.info("no new data since decision %s: no second decision", key)
        return result
    if decision is Decision.NONE:
        return result
    if apply:
        reason = f"{decision}: " + "; ".join(reasons)
        if decision is Decision.RAMP:
            pct_after = min(100, routing.canary_pct + settings.release.ramp_step_pct)
            write_routing(
                settings,
                type(routing)(
                    stable=routing.stable,
                    canary=routing.canary,
                    canary_pct=pct_after,
                    updated_at=datetime.now(UTC).isoformat(),
                    reason=reason,
                ),
            )
        elif decision is Decision.ABORT:
            pct_after = abort_canary(settings, reason).canary_pct
        elif decision is Decision.PROMOTE:
            pct_after = promote_canary(settings, reason).canary_pct
        result.pct_after = pct_after
        result.applied = decision is not Decision.HOLD
    history.append(_metrics_record(result))
    atomic_write_json(feedback_events_file(settings), history)
    return result


def raise_no_routing(settings: Settings) -> None:

    raise DataNotFoundError(
        f"{settings.routing_file} does not exist: train and serve a model first "
        "(movierec train --serve-if-none)"
    )


def _users(settings: Settings) -> pd.DataFrame:

    try:
        return load_tables(settings, settings.data.dataset).users
    except Exception as exc:  # demographics are optional: satisfaction is then unknown
        log.warning("no demographics for the satisfaction ratio: %s", exc)
        return pd.DataFrame(columns=["user_id", "gender"])


def _last_stable_ctr(settings: Settings, stable: str) -> float | None:
    """Stable's CTR from the latest decision that measured it (at 100% canary, stable serves
    nobody, so the reference is what it did before)."""
    for event in reversed(read_json(feedback_events_file(settings), default=[])):
        arm = event.get("arms", {}).get("stable", {})
        if (
            arm.get("model_version") == stable
            and arm.get("ctr") is not None
            and arm.get("mature_requests", 0) >= settings.release.min_samples_per_arm
        ):
            return float(arm["ctr"])
    return None


def _metrics_record(result: ReleaseResult) -> dict[str, Any]:
    record = result.summary()
    record["evaluated_at"] = datetime.now(UTC).isoformat()
    return record
