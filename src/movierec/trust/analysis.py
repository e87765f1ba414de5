"""Analyses of feedback loops, fairness and concentration, offline (data) and online (logs).

Each writes a JSON file and PNG plots under `reports/` and returns a short summary.

- offline: does popularity feed itself (Spearman correlation between a movie's popularity in
  the first half of the time range and its interactions in the second half), how much of all
  interaction goes to the top 10% of movies, how many genres a user explores, and interactions
  and mean rating by gender and by age group.
- online: over time windows of the served log and the event stream: CTR per arm, the
  satisfaction ratio, how concentrated the recommendations are (Gini of exposure, share of
  long-tail movies, catalog coverage) and CTR per gender; breaches of the release thresholds
  are flagged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypedDict

import numpy as np
import pandas as pd
from scipy import stats

from movierec.core.files import atomic_write_json
from movierec.core.schema import age_group_label
from movierec.core.settings import Settings
from movierec.core.vocabulary import ARMS
from movierec.data.lake import load_lake
from movierec.data.movielens import load_tables
from movierec.release.online import ArmEvents, ArmLook, observe_arm
from movierec.release.served import load_served, served_log_files

log = logging.getLogger(__name__)


@dataclass
class AnalysisResult:
    json_path: Path
    plots: list[Path]
    summary: dict[str, object]


class WindowArm(TypedDict):
    """One arm in one time window of the online analysis."""

    requests: int
    ctr: float | None
    ctr_by_gender: dict[str, float | None]
    satisfaction_ratio: float | None  # women's mean rating over men's
    gini_exposure: float
    longtail_share: float | None
    catalog_coverage: float
    breaches: list[str]


class Window(TypedDict):
    start: str
    end: str
    arms: dict[str, WindowArm]


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values: 0 all equal, near 1 all on one."""
    v = np.sort(np.asarray(values, dtype=float))
    if v.size == 0 or v.sum() == 0:
        return 0.0
    n = v.size
    cum = np.cumsum(v)
    return float((n + 1 - 2 * (cum / cum[-1]).sum()) / n)


# ---- offline --------------------------------------------------------------------------------


def analyze_offline(settings: Settings) -> AnalysisResult:
    """Feedback-loop and fairness statistics of the ingested data (the lake, or the fetched
    dataset when nothing was ingested yet)."""

    tables = load_tables(settings, settings.data.dataset)
    ratings = _lake_ratings(settings)
    if ratings is None or ratings.empty:
        ratings = tables.ratings
    out = offline_stats(ratings, tables.users, tables.movies)
    folder = settings.reports_path
    json_path = folder / "offline_feedback_analysis.json"
    atomic_write_json(json_path, out)
    plots = _offline_plots(ratings, tables.movies, folder)
    return AnalysisResult(json_path, plots, _headline(out))


def _lake_ratings(settings: Settings) -> pd.DataFrame | None:
    try:
        return load_lake(settings).ratings
    except Exception as exc:  # the lake is optional here
        log.info("no lake (%s): analysing the fetched dataset", exc)
        return None


def offline_stats(
    ratings: pd.DataFrame, users: pd.DataFrame, movies: pd.DataFrame
) -> dict[str, object]:
    """The offline numbers, from ratings (user_id, movie_id, rating, timestamp)."""
    r = ratings.sort_values("timestamp")
    counts = r["movie_id"].value_counts().to_numpy()
    top = max(1, int(np.ceil(0.1 * counts.size)))
    per_movie = r.groupby("movie_id")["rating"]
    per_user = _genres_per_user(r, movies)
    by = _by_group(r, users)
    return {
        "ratings": len(r),
        "users": int(r["user_id"].nunique()),
        "movies": int(r["movie_id"].nunique()),
        "popularity_feedback": _popularity_feedback(r),
        "popularity_vs_mean_rating_spearman": _num(
            stats.spearmanr(per_movie.size(), per_movie.mean())[0]
        ),
        "top10pct_movies_share_of_interactions": float(
            np.sort(counts)[::-1][:top].sum() / counts.sum()
        ),
        "gini_of_interactions_per_movie": gini(counts),
        "genres_per_user": {
            "mean": float(per_user.mean()),
            "median": float(per_user.median()),
            "p10": float(per_user.quantile(0.1)),
        },
        "by_gender": by["gender"],
        "by_age_group": by["age_group"],
    }


def _popularity_feedback(r: pd.DataFrame) -> dict[str, float | str | None]:
    """Does a movie's popularity in the first half of the time range predict its interactions
    in the second half (Spearman)?"""
    half = r["timestamp"].iloc[len(r) // 2]
    early = r[r["timestamp"] < half]["movie_id"].value_counts()
    late = r[r["timestamp"] >= half]["movie_id"].value_counts()
    both = pd.concat([early.rename("early"), late.rename("late")], axis=1).fillna(0)
    rho, p = stats.spearmanr(both["early"], both["late"]) if len(both) > 2 else (np.nan, np.nan)
    return {
        "spearman_early_popularity_vs_late_interactions": _num(rho),
        "p_value": _num(p),
        "split_at": str(half),
    }


def _genres_per_user(r: pd.DataFrame, movies: pd.DataFrame) -> pd.Series:
    genres = movies.set_index("movie_id")["genres"]
    return (
        r[["user_id", "movie_id"]]
        .assign(genre=r["movie_id"].map(genres))
        .explode("genre")
        .dropna(subset=["genre"])
        .groupby("user_id")["genre"]
        .nunique()
    )


def _by_group(r: pd.DataFrame, users: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """Interactions and mean rating by gender and by age group."""
    joined = r.merge(users[["user_id", "gender", "age"]], on="user_id", how="left")
    joined["age_group"] = age_group_label(joined["age"].to_numpy(dtype=float))
    by: dict[str, dict[str, dict[str, float]]] = {}
    for col in ("gender", "age_group"):
        by[col] = {
            str(k): {
                "interactions": int(v["rating"].size),
                "users": int(v["user_id"].nunique()),
                "interactions_per_user": float(v["rating"].size / max(1, v["user_id"].nunique())),
                "mean_rating": float(v["rating"].mean()),
            }
            for k, v in joined.groupby(col, observed=True)
        }
    return by


def _num(v: float) -> float | None:
    v = float(v)
    return None if np.isnan(v) else v


def _headline(out: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in out.items() if not isinstance(v, dict | list)}


def _offline_plots(ratings: pd.DataFrame, movies: pd.DataFrame, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    counts = np.sort(ratings["movie_id"].value_counts().to_numpy())
    lorenz = np.cumsum(counts) / counts.sum()
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(np.linspace(0, 1, lorenz.size), lorenz, label="interactions")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="equal")
    ax.set_xlabel("share of movies (least to most popular)")
    ax.set_ylabel("share of interactions")
    ax.set_title(f"Concentration (Gini {gini(counts):.2f})")
    ax.legend()
    lorenz_path = folder / "offline_popularity_lorenz.png"
    fig.tight_layout()
    fig.savefig(lorenz_path, dpi=90)
    plt.close(fig)
    return [lorenz_path]


# ---- online ---------------------------------------------------------------------------------


def analyze_online(settings: Settings, windows: int = 6) -> AnalysisResult:
    """Per time window: CTR per arm, satisfaction, exposure concentration, CTR per gender."""

    served = load_served(served_log_files(settings))
    lake = load_lake(settings)
    tables = load_tables(settings, settings.data.dataset)
    popularity = lake.ratings["movie_id"].value_counts() if len(lake.ratings) else pd.Series()
    head = set(popularity.index[: max(1, int(0.2 * len(popularity)))])
    catalog = max(1, len(tables.movies))
    window = timedelta(minutes=settings.release.click_window_minutes)
    rows: list[Window] = []
    if len(served):
        edges = pd.date_range(served["ts"].min(), served["ts"].max(), periods=windows + 1)
        for i in range(windows):
            lo, hi = edges[i], edges[i + 1]
            part = served[(served["ts"] >= lo) & ((served["ts"] < hi) | (i == windows - 1))]
            row: Window = {"start": str(lo), "end": str(hi), "arms": {}}
            for arm in ARMS:
                rows_arm = part[part["arm"] == arm]
                if rows_arm.empty:
                    continue
                events = ArmEvents(rows_arm, lake.watches, lake.ratings, tables.users)
                m = observe_arm(events, ArmLook(window, arm, None)).metrics
                items = rows_arm["items"].explode().dropna()
                exposure = items.value_counts().to_numpy()
                row["arms"][arm] = {
                    "requests": m.requests,
                    "ctr": m.ctr,
                    "ctr_by_gender": m.ctr_by_gender,
                    "satisfaction_ratio": m.female_male_rating_ratio,
                    "gini_exposure": gini(exposure),
                    "longtail_share": float((~items.isin(head)).mean()) if len(items) else None,
                    "catalog_coverage": float(items.nunique() / catalog),
                    "breaches": _breaches(settings, m.ctr, m.female_male_rating_ratio),
                }
            rows.append(row)
    out = {"windows": rows, "thresholds": _thresholds(settings)}
    folder = settings.reports_path
    json_path = folder / "online_feedback_analysis.json"
    atomic_write_json(json_path, out)
    plots = _online_plots(rows, folder)
    flagged = sum(len(a["breaches"]) for r in rows for a in r["arms"].values())
    return AnalysisResult(json_path, plots, {"windows": len(rows), "breaches": flagged})


def _thresholds(settings: Settings) -> dict[str, float]:
    return {
        "ctr_min_abs": settings.release.ctr_min_abs,
        "satisfaction_low": settings.release.satisfaction_low,
        "satisfaction_high": settings.release.satisfaction_high,
    }


def _breaches(settings: Settings, ctr: float | None, ratio: float | None) -> list[str]:
    out = []
    if ctr is not None and ctr < settings.release.ctr_min_abs:
        out.append(f"CTR {ctr:.3f} < {settings.release.ctr_min_abs}")
    if (
        ratio is not None
        and not settings.release.satisfaction_low <= ratio <= settings.release.satisfaction_high
    ):
        out.append(f"satisfaction ratio {ratio:.3f} out of range")
    return out


def _online_plots(rows: list[Window], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for arm in ARMS:
        xs = [i for i, r in enumerate(rows) if arm in r["arms"]]
        axes[0].plot(xs, [rows[i]["arms"][arm]["ctr"] for i in xs], marker="o", label=arm)
        axes[1].plot(xs, [rows[i]["arms"][arm]["gini_exposure"] for i in xs], marker="o", label=arm)
    axes[0].set_title("CTR per window")
    axes[1].set_title("Gini of exposure per window")
    for ax in axes:
        ax.set_xlabel("window")
        ax.legend()
    fig.tight_layout()
    path = folder / "online_feedback_analysis.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [path]
