"""Streaming benchmark: what a fresh answer is worth, replaying the events after a time cut.

    .venv/bin/python evaluation/bench_streaming.py --dataset ml-100k --daily-retrain --days 4
    .venv/bin/python evaluation/bench_streaming.py --dataset ml-1m --recent-weights 1 3
    .venv/bin/python evaluation/bench_offline.py --dataset ml-1m --protocols time streaming

Protocol (issue 28): the global time cut T of `bench_offline.py`'s time protocol
(`data.splits.time_cut`, the latest 10% of ratings after it); a two-stage model fitted on the
ratings before T (`fit_two_stage`, default parameters with the ranker split `global_time` as
that protocol uses, without its tuning search); the ratings after T replayed in time order
(ties by user, then movie). Before each of them, each arm gives the user a top 10, and the
rated movie is the one to find:
- precomputed: the list the model made at T (a cold-start list for a user it does not know);
- precomputed, seen removed: the same model's list minus the movies the user rated since T;
- fold-in: what the service answers (`serve/live/answers.py`): the precomputed list while the
  user has no event since T, else `Recommender.recommend_from_history(user, events since T)`;
- daily retrain (`--daily-retrain`): a model fitted on every rating before the start of the
  event's UTC day, its precomputed list; and daily + fold-in: that model folded in with the
  user's events of the day (an upper bound on what retraining buys);
- fold-in, recent weighted (`--recent-weights`): fold-in with `ModelParams.fold_in_recent_weight`
  (the latest movies' item-item scores weigh more), the same fitted model.
hit@10 and NDCG@10 (one movie to find: 1 / log2(rank + 2)), overall and by the user's events
since T (0, 1-4, 5-19, 20+), each with a 95% interval from a bootstrap over users (one user's
events are not independent). Scored events are a uniform sample (`--max-events`, 3,000 by
default, fixed seed);
every history is still the user's whole stream since T. Printed, and written to
evaluation/results/ (not committed).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
K = 10
BUCKETS = ((0, 0, "0"), (1, 4, "1-4"), (5, 19, "5-19"), (20, None, "20+"))
PRECOMPUTED_DEPTH = 100  # the precomputed list's length, before the seen are removed


@dataclass(frozen=True)
class Moment:
    """What an arm knows before one event: the user, their events since T (oldest first) and
    the event's time."""

    user_id: int
    history: Sequence[str]
    history_times: Sequence[pd.Timestamp]
    at: pd.Timestamp


Arm = Callable[[Moment], Sequence[str]]


def stream(after: pd.DataFrame) -> pd.DataFrame:
    """The events after T in replay order, each with `since`: the user's events before it."""
    ordered = after.sort_values(["timestamp", "user_id", "movie_id"], kind="stable")
    ordered = ordered.reset_index(drop=True)
    return ordered.assign(since=ordered.groupby("user_id").cumcount())


def first_days(events: pd.DataFrame, days: int | None) -> int:
    """How many events of the stream fall in its first `days` UTC days (all: None)."""
    if days is None:
        return len(events)
    end = events["timestamp"].iat[0].floor("D") + pd.Timedelta(days=days)
    return int((events["timestamp"] < end).sum())


def sample(events: pd.DataFrame, max_events: int, seed: int, limit: int) -> np.ndarray:
    """Positions of the scored events among the first `limit`, in replay order: all, or a
    uniform sample of `max_events`."""
    if not max_events or max_events >= limit:
        return np.arange(limit)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(limit, size=max_events, replace=False))


def bucket(since: np.ndarray) -> np.ndarray:
    """Each event's bucket of events since T."""
    out = np.empty(len(since), dtype=object)
    for low, high, name in BUCKETS:
        out[(since >= low) & (since <= (np.inf if high is None else high))] = name
    return out


def score(items: Sequence[str], target: str, k: int = K) -> tuple[float, float]:
    """(hit@k, NDCG@k) of one list for one movie to find."""
    top = list(items)[:k]
    if target not in top:
        return 0.0, 0.0
    return 1.0, 1.0 / float(np.log2(top.index(target) + 2))


def replay(events: pd.DataFrame, scored: np.ndarray, arms: dict[str, Arm]) -> pd.DataFrame:
    """Each scored event's user, bucket and, per arm, its hit@10 and NDCG@10 (and the arm's
    milliseconds). Histories are each user's events before the scored one."""
    movies = events["movie_id"].astype(str).to_numpy()
    times = list(events["timestamp"])
    positions = events.groupby("user_id").indices  # each user's rows, in replay order
    rows = []
    for i in scored:
        user, since = int(events["user_id"].iat[i]), int(events["since"].iat[i])
        earlier = positions[user][:since]
        moment = Moment(user, list(movies[earlier]), [times[j] for j in earlier], times[i])
        row: dict[str, Any] = {"user_id": user, "since": since}
        for name, arm in arms.items():
            start = time.perf_counter()
            items = arm(moment)
            row[f"{name}_ms"] = 1000 * (time.perf_counter() - start)
            row[f"{name}_hit"], row[f"{name}_ndcg"] = score(items, movies[i])
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.assign(bucket=bucket(table["since"].to_numpy()))


def user_bootstrap(
    table: pd.DataFrame, columns: Sequence[str], draws: int = 1000, seed: int = 0
) -> np.ndarray:
    """`draws` means of each column over events, users drawn with replacement (draws x
    columns)."""
    per_user = table.groupby("user_id")[list(columns)].sum().to_numpy(dtype=float)
    counts = table.groupby("user_id").size().to_numpy(dtype=float)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(counts.size, np.full(counts.size, 1.0 / counts.size), draws)
    return (weights @ per_user) / (weights @ counts)[:, None]


def interval(draws: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(low), float(high)


def summarize(table: pd.DataFrame, arms: Sequence[str], seed: int = 0) -> pd.DataFrame:
    """Per bucket (and overall) and arm: events, users, hit@10 and NDCG@10 with intervals."""
    rows = []
    groups = [("all", table)] + [(n, table[table["bucket"] == n]) for _, _, n in BUCKETS]
    for name, part in groups:
        if part.empty:
            continue
        columns = [f"{arm}_{m}" for arm in arms for m in ("hit", "ndcg")]
        draws = user_bootstrap(part, columns, seed=seed)
        for j, arm in enumerate(arms):
            hit, ndcg = draws[:, 2 * j], draws[:, 2 * j + 1]
            rows.append(
                {
                    "bucket": name,
                    "arm": arm,
                    "events": len(part),
                    "users": part["user_id"].nunique(),
                    "hit@10": part[f"{arm}_hit"].mean(),
                    "hit_ci": interval(hit),
                    "ndcg@10": part[f"{arm}_ndcg"].mean(),
                    "ndcg_ci": interval(ndcg),
                }
            )
    return pd.DataFrame(rows)


def ratio(table: pd.DataFrame, top: str, bottom: str, metric: str = "hit", seed: int = 0) -> dict:
    """`top`'s mean over `bottom`'s on the same events, with a paired user-bootstrap interval."""
    draws = user_bootstrap(table, [f"{top}_{metric}", f"{bottom}_{metric}"], seed=seed)
    value = table[f"{top}_{metric}"].mean() / table[f"{bottom}_{metric}"].mean()
    return {"ratio": float(value), "ci": interval(draws[:, 0] / draws[:, 1])}


# ---- the arms ------------------------------------------------------------------------------
@dataclass
class Precomputed:
    """A model's lists made once (at its cutoff), `PRECOMPUTED_DEPTH` long."""

    lists: dict[int, list[str]]

    @classmethod
    def of(cls, model: Any, users: np.ndarray) -> Precomputed:
        return cls(model.recommend(users, PRECOMPUTED_DEPTH))

    def top(self, moment: Moment) -> list[str]:
        return self.lists[moment.user_id][:K]

    def unseen(self, moment: Moment) -> list[str]:
        seen = set(moment.history)
        return [m for m in self.lists[moment.user_id] if m not in seen][:K]


def fold_in_arm(model: Any, precomputed: Precomputed) -> Arm:
    """As the service answers: the precomputed list until the user has an event since T."""

    def answer(moment: Moment) -> Sequence[str]:
        if not moment.history:
            return precomputed.top(moment)
        return model.recommend_from_history(moment.user_id, moment.history, K)

    return answer


@dataclass
class DailyModels:
    """A model refitted at the start of each UTC day on every rating before it (the first
    day's is the model at T); only the current day's is kept."""

    fit: Callable[[pd.DataFrame], Any]  # ratings -> model
    before: pd.DataFrame  # the ratings before T
    after: pd.DataFrame  # the events after T (the stream)
    users: np.ndarray
    day: pd.Timestamp | None = None
    model: Any = None
    lists: Precomputed | None = None
    fits: list[float] = field(default_factory=list)  # seconds per refit

    def start(self, model: Any, precomputed: Precomputed, at: pd.Timestamp) -> None:
        self.day, self.model, self.lists = at.floor("D"), model, precomputed

    def current(self, at: pd.Timestamp) -> tuple[Any, Precomputed]:
        day = at.floor("D")
        if day != self.day:
            started = time.perf_counter()
            ratings = pd.concat([self.before, self.after[self.after["timestamp"] < day]])
            self.model = self.fit(ratings)
            self.lists = Precomputed.of(self.model, self.users)
            self.day = day
            self.fits.append(time.perf_counter() - started)
        assert self.lists is not None
        return self.model, self.lists

    def precomputed(self, moment: Moment) -> Sequence[str]:
        return self.current(moment.at)[1].top(moment)

    def fold_in(self, moment: Moment) -> Sequence[str]:
        model, lists = self.current(moment.at)
        day = moment.at.floor("D")
        today = [m for m, t in zip(moment.history, moment.history_times, strict=True) if t >= day]
        if not today:
            return lists.top(moment)
        return model.recommend_from_history(moment.user_id, today, K)


# ---- the run -------------------------------------------------------------------------------
def _settings() -> Any:
    from movierec.core.settings import Settings

    home = Path(os.environ.get("MOVIEREC_HOME", REPO / ".cache" / "test-data"))
    return Settings.from_env({}, home=home, cache_dir=REPO / ".cache", grouplens_url="")


def _fitter(tables: Any, threads: int) -> Callable[[pd.DataFrame], Any]:
    from movierec.model.params import ModelParams
    from movierec.model.training.dataset import TrainingData
    from movierec.model.training.fit import fit_two_stage

    params = ModelParams(ranker_split="global_time")

    def fit(ratings: pd.DataFrame) -> Any:
        data = TrainingData.from_ratings(ratings, tables.users, tables.movies)
        model = fit_two_stage(data, params, threads=threads)
        for booster in (*model.parts.rating.boosters.values(), model.parts.ranker.booster):
            if booster is not None:  # one thread per answer, as the service loads its models
                booster.set_param({"nthread": 1})
        return model

    return fit


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The protocol on one dataset: the scored table, its summary and the ratios."""
    from movierec.data.movielens import fetch, load_tables
    from movierec.data.splits import time_cut
    from movierec.model.recommender import TwoStageModel

    # Load, cut at T
    settings = _settings()
    fetch(settings, args.dataset)
    tables = load_tables(settings, args.dataset)
    before, after = time_cut(tables.ratings, 0.1, "timestamp")
    events = stream(after)
    scored = sample(events, args.max_events, args.seed, first_days(events, args.days))
    # The model at T and its lists
    fit = _fitter(tables, args.threads)
    started = time.perf_counter()
    model = fit(before)
    fit_seconds = time.perf_counter() - started
    users = np.unique(events["user_id"].to_numpy()[scored])
    lists = Precomputed.of(model, users)
    arms: dict[str, Arm] = {
        "precomputed": lists.top,
        "precomputed_unseen": lists.unseen,
        "fold_in": fold_in_arm(model, lists),
    }
    for weight in args.recent_weights:
        variant = TwoStageModel(model.params.replace(fold_in_recent_weight=weight), model.parts)
        arms[f"fold_in_recent{weight:g}"] = fold_in_arm(variant, lists)
    daily = None
    if args.daily_retrain:
        daily = DailyModels(fit, before, events, users)
        daily.start(model, lists, events["timestamp"].iat[0])
        arms |= {"daily": daily.precomputed, "daily_fold_in": daily.fold_in}
    # Replay
    table = replay(events, scored, arms)
    return _results(args, table, list(arms), fit_seconds, daily, len(events))


def _results(
    args: argparse.Namespace,
    table: pd.DataFrame,
    arms: list[str],
    fit_seconds: float,
    daily: DailyModels | None,
    stream_events: int,
) -> dict[str, Any]:
    ratios = {"fold_in/precomputed": ratio(table, "fold_in", "precomputed")}
    ratios["fold_in/precomputed_unseen"] = ratio(table, "fold_in", "precomputed_unseen")
    if daily is not None:
        ratios["fold_in/daily"] = ratio(table, "fold_in", "daily")
        ratios["fold_in/daily_fold_in"] = ratio(table, "fold_in", "daily_fold_in")
    for name in arms:
        if name.startswith("fold_in_recent"):
            ratios[f"{name}/fold_in"] = ratio(table, name, "fold_in")
            ratios[f"{name}/fold_in ndcg"] = ratio(table, name, "fold_in", "ndcg")
    ratios["fold_in/precomputed ndcg"] = ratio(table, "fold_in", "precomputed", "ndcg")
    folded = table.loc[table["since"] > 0, "fold_in_ms"]
    return {
        "dataset": args.dataset,
        "stream_events": stream_events,
        "scored_events": len(table),
        "scored_users": int(table["user_id"].nunique()),
        "seed": args.seed,
        "fit_seconds_at_T": round(fit_seconds, 1),
        "daily_refits": len(daily.fits) if daily else 0,
        "daily_refit_seconds_mean": round(float(np.mean(daily.fits)), 1) if daily else None,
        "fold_in_ms_median": round(float(folded.median()), 2) if len(folded) else None,
        "hit_ratios": ratios,
        "summary": summarize(table, arms, seed=args.seed),
        "table": table,
    }


def report(result: dict[str, Any]) -> None:
    summary, table = result.pop("summary"), result.pop("table")
    pd.set_option("display.width", 250)
    shown = summary.assign(
        hit_ci=summary["hit_ci"].map(lambda c: f"[{c[0]:.4f}, {c[1]:.4f}]"),
        ndcg_ci=summary["ndcg_ci"].map(lambda c: f"[{c[0]:.4f}, {c[1]:.4f}]"),
    )
    print(json.dumps(result, indent=1))
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    results_dir = REPO / "evaluation" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    name = f"bench_streaming_{result['dataset']}"
    shown.to_csv(results_dir / f"{name}.csv", index=False)
    table.to_csv(results_dir / f"{name}_events.csv", index=False)
    (results_dir / f"{name}.json").write_text(json.dumps(result, indent=1))


def arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k", choices=["ml-100k", "ml-1m"])
    parser.add_argument(
        "--max-events", type=int, default=3000, help="score a uniform sample (0: every event)"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--days", type=int, default=None, help="score the first DAYS only")
    parser.add_argument(
        "--recent-weights",
        type=float,
        nargs="*",
        default=[],
        help="also fold-in arms with these fold_in_recent_weight values",
    )
    parser.add_argument(
        "--daily-retrain", action="store_true", help="also refit every simulated day (slow)"
    )
    return parser.parse_args(argv)


def main() -> None:
    from movierec.core.logs import configure_logging

    configure_logging()
    report(run(arguments()))


if __name__ == "__main__":
    main()
