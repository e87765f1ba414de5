"""Data quality checks of a refresh: drift against the training data, and rating poisoning.

Drift. New ratings are compared with the reference (the data the current model was trained
on) by the Population Stability Index of the rating distribution and of the genre mix, and by
the two-sample Kolmogorov-Smirnov statistic of activity per user (ratings per active user,
over windows of the same length). PSI above 0.2 (a common rule
of thumb: 0.1 moderate, 0.2 significant) or a KS test with p < 0.01 and D > 0.1 flags drift.

Poisoning. A burst of extreme ratings for one movie from new accounts is the classic shilling
attack. For each movie that received at least `min_burst` ratings inside one 24-hour window of
the new data, the window's rating distribution is compared with the movie's history (smoothed
towards the global distribution, so a movie with little history is not judged on noise) by a
chi-squared goodness-of-fit test. The movie is flagged when p < `alpha`, most of the burst is
extreme (1 or 5 stars) and most of it comes from accounts first seen in the new data. Flagged
events are listed so that training can exclude them (`exclude_flagged_events`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import pandas as pd
from scipy import stats

log = logging.getLogger(__name__)

PSI_DRIFT = 0.2
KS_P = 0.01
KS_D = 0.1
_EPS = 1e-4


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population Stability Index between two distributions given as counts over the same bins."""
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    if e.sum() == 0 or a.sum() == 0:
        return 0.0
    e = np.clip(e / e.sum(), _EPS, None)
    a = np.clip(a / a.sum(), _EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def _rating_counts(ratings: pd.DataFrame) -> np.ndarray:
    return np.bincount(ratings["rating"].astype(int).clip(1, 5), minlength=6)[1:]


def _genre_counts(ratings: pd.DataFrame, movies: pd.DataFrame) -> pd.Series:
    genres = movies.set_index("movie_id")["genres"]
    return ratings["movie_id"].map(genres).explode().dropna().value_counts()


class DriftReport(TypedDict, total=False):
    """The refresh report's `drift` section."""

    checked: bool
    reason: str  # why not checked
    drifted: bool
    reference_rows: int
    rows: int
    rating_psi: float
    activity_ks: dict[str, float]  # statistic, p_value
    genre_psi: float
    flags: list[str]  # each check that flagged, with its figure


class BurstFinding(TypedDict):
    """A movie whose burst of ratings looks like an attack."""

    movie_id: str
    burst_ratings: int
    chi2: float
    p_value: float
    extreme_share: float
    new_account_share: float
    window_start: str


class FlaggedEvent(TypedDict):
    user_id: int
    movie_id: str


class PoisoningReport(TypedDict):
    checked: int  # movies with a burst large enough to judge
    flagged: list[BurstFinding]
    flagged_events: list[FlaggedEvent]  # to exclude from training


def drift_report(
    reference: pd.DataFrame, current: pd.DataFrame, movies: pd.DataFrame | None = None
) -> DriftReport:
    """PSI of ratings and genres, KS of activity per user; `drifted` when any flags."""
    if reference.empty or current.empty:
        return {"checked": False, "reason": "no reference or no new ratings", "drifted": False}
    out: DriftReport = {"checked": True, "reference_rows": len(reference), "rows": len(current)}
    out["rating_psi"] = rating_psi = psi(_rating_counts(reference), _rating_counts(current))
    # activity per user over windows of equal length: the newest slice of the reference that
    # spans as long as the new data does
    span = current["timestamp"].max() - current["timestamp"].min()
    recent = reference[reference["timestamp"] >= reference["timestamp"].max() - span]
    act_ref = recent.groupby("user_id").size().to_numpy()
    act_cur = current.groupby("user_id").size().to_numpy()
    ks = stats.ks_2samp(act_ref, act_cur)
    out["activity_ks"] = {"statistic": float(ks.statistic), "p_value": float(ks.pvalue)}
    flags = []
    if rating_psi > PSI_DRIFT:
        flags.append(f"rating distribution PSI {rating_psi:.3f} > {PSI_DRIFT}")
    if ks.pvalue < KS_P and ks.statistic > KS_D:
        flags.append(f"activity per user KS D={ks.statistic:.3f} (p={ks.pvalue:.2g})")
    if movies is not None and len(movies):
        ref_g, cur_g = _genre_counts(reference, movies), _genre_counts(current, movies)
        idx = ref_g.index.union(cur_g.index)
        out["genre_psi"] = genre_psi = psi(
            ref_g.reindex(idx, fill_value=0).to_numpy(), cur_g.reindex(idx, fill_value=0).to_numpy()
        )
        if genre_psi > PSI_DRIFT:
            flags.append(f"genre mix PSI {genre_psi:.3f} > {PSI_DRIFT}")
    out["flags"] = flags
    out["drifted"] = bool(flags)
    return out


@dataclass(frozen=True)
class PoisoningRule:
    """When a movie's burst of ratings is flagged as an attack."""

    min_burst: int = 20  # ratings of one movie inside one 24-hour window
    alpha: float = 1e-6  # chi-squared p-value against the movie's (smoothed) history
    extreme_share: float = 0.8  # share of 1- and 5-star ratings in the burst
    new_account_share: float = 0.5  # share of the burst from accounts new in this data
    prior_weight: float = 20.0  # pseudo-ratings of the global distribution in the history


def poisoning_report(
    history: pd.DataFrame,
    new: pd.DataFrame,
    new_users: set[int] | pd.Index,
    rule: PoisoningRule | None = None,
) -> PoisoningReport:
    """Movies under a rating burst that looks like an attack, and the events to exclude."""
    rule = rule or PoisoningRule()
    if new.empty:
        return {"checked": 0, "flagged": [], "flagged_events": []}
    hist_counts = (
        pd.crosstab(history["movie_id"], history["rating"].astype(int).clip(1, 5)).reindex(
            columns=range(1, 6), fill_value=0
        )
        if len(history)
        else pd.DataFrame(columns=range(1, 6))
    )
    overall = _rating_counts(history) if len(history) else _rating_counts(new)
    global_dist = (overall + 1.0) / (overall + 1.0).sum()
    fresh_users = set(int(u) for u in new_users)
    flagged: list[BurstFinding] = []
    events: list[FlaggedEvent] = []
    counts = new["movie_id"].value_counts()
    checked = 0
    for movie in counts[counts >= rule.min_burst].index:
        burst = _densest_day(new[new["movie_id"] == movie].sort_values("timestamp"))
        if len(burst) < rule.min_burst:
            continue
        checked += 1
        prior = (
            hist_counts.loc[movie].to_numpy(dtype=float)
            if movie in hist_counts.index
            else np.zeros(5)
        )
        expected = (prior + rule.prior_weight * global_dist) / (prior.sum() + rule.prior_weight)
        finding = _judge_burst(movie, burst, expected, fresh_users, rule)
        if finding is not None:
            flagged.append(finding)
            mask = burst["user_id"].isin(fresh_users)
            events += [
                {"user_id": int(u), "movie_id": str(m)}
                for u, m in zip(
                    burst.loc[mask, "user_id"], burst.loc[mask, "movie_id"], strict=True
                )
            ]
    if flagged:
        log.warning("possible rating poisoning: %s", [f["movie_id"] for f in flagged])
    return {"checked": checked, "flagged": flagged, "flagged_events": events}


def _judge_burst(
    movie: str, burst: pd.DataFrame, expected: np.ndarray, fresh: set[int], rule: PoisoningRule
) -> BurstFinding | None:
    """The finding for a movie's burst, or None when it does not look like an attack."""
    observed = _rating_counts(burst)
    chi = stats.chisquare(observed, expected * observed.sum())
    extreme = (observed[0] + observed[4]) / observed.sum()
    new_share = float(burst["user_id"].isin(fresh).mean())
    if (
        chi.pvalue < rule.alpha
        and extreme >= rule.extreme_share
        and new_share >= rule.new_account_share
    ):
        return {
            "movie_id": movie,
            "burst_ratings": int(observed.sum()),
            "chi2": float(chi.statistic),
            "p_value": float(chi.pvalue),
            "extreme_share": float(extreme),
            "new_account_share": new_share,
            "window_start": str(burst["timestamp"].iloc[0]),
        }
    return None


def _densest_day(part: pd.DataFrame) -> pd.DataFrame:
    """The ratings of the 24-hour window holding the most of them."""
    ts = pd.to_datetime(part["timestamp"], utc=True).dt.tz_convert(None).to_numpy("datetime64[ns]")
    ends = np.searchsorted(ts, ts + np.timedelta64(1, "D"), side="left")
    i = int(np.argmax(ends - np.arange(len(ts))))
    return part.iloc[i : ends[i]]
