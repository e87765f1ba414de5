"""Offline benchmark: our pipeline against Surprise's SVD++, EASE, popularity and the training
mean, side by side, overall and per slice.

    .venv/bin/python evaluation/bench_offline.py [--dataset ml-100k] [--protocols random time user5]
        [--mitigations] [--no-svdpp]
    .venv/bin/python evaluation/bench_offline.py --dataset ml-1m --no-svdpp
    .venv/bin/python evaluation/bench_offline.py --protocols streaming [--streaming="--days 4"]

Protocols on the fetched ratings (movie ids as slugs, duplicates merged):
- random: a random 80/20 split of the ratings (seed 42);
- time: a global time cut, the latest 10% of ratings are the test set (as a live site sees
  it: most test ratings come from users who arrived after the cut);
- user5: per user, the latest 5 ratings are the test set;
- streaming: the time protocol's cut, the ratings after it replayed in time order
  (`bench_streaming.py`, its own tables: what fold-in and retraining are worth).
RMSE on every test rating, and per slice: known user and movie, new user (no training
rating), new movie (a known user, a movie without training rating); the baselines predict
every row too (SVD++ falls back on its biases, the training mean is one number). NDCG@10 and
Recall@20 with relevant = test rating >= 4 and candidates = every movie the user did not rate
in train, for the test users with training data; the new users' cold-start lists against
popularity apart. Ours is trained with tuning, as `movierec train` does, its ranker on a split
of the training data that mirrors the protocol (`RANKER_SPLIT`: random, each user's latest, a
global time cut); "ours: rank by
rating" ranks every unseen movie by our rating model. Training time is the child process's
wall time (and its CPU time, which another job on the machine does not inflate); peak memory
is its maximum resident set size. Results are printed as tables and written to
evaluation/results/ (not committed).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from movierec.core.threads import share_cores

REPO = Path(__file__).resolve().parents[1]


def splits(
    ratings: pd.DataFrame, protocol: str, seed: int = 42
) -> tuple[pd.DataFrame, pd.DataFrame]:
    r = ratings.sort_values(["timestamp", "user_id", "movie_id"], ignore_index=True)
    if protocol == "random":
        mask = np.random.default_rng(seed).random(len(r)) < 0.2
        return r[~mask], r[mask]
    if protocol == "time":
        from movierec.data.splits import time_cut

        return time_cut(r, 0.1, "timestamp")
    if protocol == "user5":
        rank = r.groupby("user_id").cumcount(ascending=False)
        return r[rank >= 5], r[rank < 5]
    raise ValueError(protocol)


def _ranking(topk: dict[int, list[str]], test: pd.DataFrame) -> dict[str, float]:
    from movierec.offline.metric_functions import ranking_metrics

    m = ranking_metrics(topk, test)
    return {"ndcg@10": m["ndcg@10"], "recall@20": m["recall@20"]}


def run_ease(
    train: pd.DataFrame, test: pd.DataFrame, movies: np.ndarray, lam: float = 500.0
) -> dict[str, Any]:
    from movierec.model.cf import EASE, Index, interaction_matrix

    t0 = time.perf_counter()
    idx = Index.build(train["user_id"].to_numpy(), movies)
    X = interaction_matrix(
        idx.uidx(train["user_id"].to_numpy()),
        idx.midx(train["movie_id"].to_numpy()),
        len(idx.users),
        len(idx.movies),
    )
    X.data[:] = 1.0
    model = EASE(lam).fit(X)
    users = np.unique(test["user_id"].to_numpy())
    topk = {}
    for start in range(0, users.size, 1000):
        chunk = users[start : start + 1000]
        u = idx.uidx(chunk)
        S = model.scores(X[u])
        S[X[u].nonzero()] = -np.inf
        top = np.argsort(-S, axis=1)[:, :20]
        topk.update({int(uid): list(idx.movies[row]) for uid, row in zip(chunk, top, strict=True)})
    return {
        **_ranking(topk, test),
        "coverage": _cov(topk, movies),
        "seconds": time.perf_counter() - t0,
    }


def run_popularity(train: pd.DataFrame, test: pd.DataFrame, movies: np.ndarray) -> dict[str, Any]:
    t0 = time.perf_counter()
    order = list(train["movie_id"].value_counts().index)
    seen = train.groupby("user_id")["movie_id"].apply(set)
    topk = {}
    for u in test["user_id"].unique():
        s = seen.get(u, set())
        topk[int(u)] = [m for m in order[:200] if m not in s][:20]
    return {
        **_ranking(topk, test),
        "coverage": _cov(topk, movies),
        "seconds": time.perf_counter() - t0,
    }


def run_svdpp(train: pd.DataFrame, test: pd.DataFrame) -> dict[str, Any]:
    """SVD++ with Surprise's defaults; its prediction of every test row."""
    from surprise import Dataset, Reader, SVDpp

    t0 = time.perf_counter()
    data = Dataset.load_from_df(
        train[["user_id", "movie_id", "rating"]], Reader(rating_scale=(1, 5))
    )
    algo = SVDpp(random_state=42)
    algo.fit(data.build_full_trainset())
    pred = np.array(
        [algo.predict(u, m).est for u, m in zip(test["user_id"], test["movie_id"], strict=True)]
    )
    return {"pred": pred, "seconds": time.perf_counter() - t0}


def slices(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    from movierec.offline.evaluate import slice_of

    return slice_of(test, train["user_id"].unique(), train["movie_id"].astype(str).unique())


def rmse_by_slice(test: pd.DataFrame, pred: np.ndarray, names: np.ndarray) -> dict[str, float]:
    err = (np.asarray(pred, dtype=float) - test["rating"].to_numpy(dtype=float)) ** 2
    out = {"all": float(np.sqrt(err.mean()))}
    for name in np.unique(names):
        out[str(name)] = float(np.sqrt(err[names == name].mean()))
    return out


def _cov(topk: dict[int, list[str]], movies: np.ndarray) -> float:
    return len({m for v in topk.values() for m in v}) / len(movies)


def run_ours(
    train: pd.DataFrame,
    test: pd.DataFrame,
    dataset: str,
    tmp: Path,
    by_rating: bool,
    mitigations: bool = False,
    ranker_split: str = "random",
) -> dict[str, Any]:
    """Our whole pipeline (tuning included) in a child process (`_child`), to measure its
    time and peak memory alone."""
    train_f, test_f = tmp / "train.parquet", tmp / "test.parquet"
    train.to_parquet(train_f, index=False)
    test.to_parquet(test_f, index=False)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    share_cores(env)  # as `movierec train` does
    args = [sys.executable, __file__, "--child", str(train_f), str(test_f), str(tmp / "out")]
    args += ["--dataset", dataset, "--ranker-split", ranker_split]
    args += ["--by-rating"] if by_rating else []
    args += ["--mitigations"] if mitigations else []
    t0 = time.perf_counter()
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["wall_seconds"] = time.perf_counter() - t0
    res["pred"] = pd.read_csv(tmp / "out" / "predictions.tsv", sep="\t")["prediction"].to_numpy()
    return res


def _child(
    train_f: Path,
    test_f: Path,
    out: Path,
    dataset: str,
    by_rating: bool,
    mitigations: bool,
    ranker_split: str,
) -> None:
    from movierec.model.recommender import RankByRating
    from movierec.offline.metric_functions import ranking_metrics
    from movierec.offline.offline_eval import offline_eval, read_ratings

    r = offline_eval(_settings(ranker_split=ranker_split), train_f, test_f, out, dataset)
    m = {k: v for k, v in r.metrics.items() if not isinstance(v, dict | list)}
    m["seconds_total"] = r.metrics["train_seconds"]
    if by_rating:
        tr, te = read_ratings(train_f), read_ratings(test_f)
        users = [u for u in te["user_id"].unique() if u in set(tr["user_id"])][:300]
        part = te[te["user_id"].isin(users)]
        by_rating_lists = RankByRating(r.model).recommend(users, 20)
        m["by_rating_ndcg@10"] = ranking_metrics(by_rating_lists, part)["ndcg@10"]
        m["same_users_ndcg@10"] = ranking_metrics(r.model.recommend(users, 20), part)["ndcg@10"]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    m["maxrss_mb"] = usage.ru_maxrss / 1024
    m["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    m["slices"] = r.metrics["slices"]
    m["new_user_ndcg@10"] = r.metrics.get("cold_start", {}).get("ndcg@10")
    if mitigations:
        m["mitigations"] = _mitigations(r.model, read_ratings(train_f), read_ratings(test_f))
    print(json.dumps(m))


MITIGATIONS = [(0.0, 0.0), (0.2, 0.0), (0.4, 0.0), (0.0, 0.3), (0.0, 0.6), (0.2, 0.3)]


def _mitigations(model: Any, train: pd.DataFrame, test: pd.DataFrame) -> list[dict[str, Any]]:
    """The same trained model's lists under each (long-tail share, genre diversity) setting."""
    from movierec.model.rerank import longtail_mask
    from movierec.offline.metric_functions import ranking_metrics
    from movierec.trust.analysis import gini

    users = np.array([u for u in test["user_id"].unique() if u in set(train["user_id"])])
    catalog = model.stage.index.movies
    tail = set(catalog[longtail_mask(model.stage.base)])
    out = []
    for share, diversity in MITIGATIONS:
        topk = model.with_reranking(share, diversity).recommend(users, 20)
        ranking = ranking_metrics(topk, test)
        exposure = pd.Series([m for v in topk.values() for m in v]).value_counts()
        counts = exposure.reindex(catalog, fill_value=0).to_numpy()
        shown = sum(len(v) for v in topk.values())
        out.append(
            {
                "longtail_min_share": share,
                "genre_diversity": diversity,
                "ndcg@10": ranking["ndcg@10"],
                "recall@20": ranking["recall@20"],
                "coverage": float((counts > 0).mean()),
                "gini": gini(counts),
                "longtail_share": sum(m in tail for v in topk.values() for m in v) / shown,
                "genres_per_list": float(np.mean([_genres(model, v) for v in topk.values()])),
            }
        )
    return out


def _genres(model: Any, items: list[str]) -> int:
    idx = model.stage.index.midx(np.asarray(items))
    return int((model.stage.base.item_genres[idx].sum(axis=0) > 0).sum())


# The ranker's training split mirrors each protocol (the service's default is global_time)
RANKER_SPLIT = {"random": "random", "time": "global_time", "user5": "user_latest"}


def _settings(**overrides: Any) -> Any:
    from movierec.core.settings import Settings

    home = REPO / ".cache" / "test-data"
    return Settings.from_env(
        {}, home=home, cache_dir=REPO / ".cache", grouplens_url="", **overrides
    )


def main() -> None:
    args = _arguments()
    if args.child:
        paths = (Path(p) for p in args.child)
        _child(*paths, args.dataset, args.by_rating, args.mitigations, args.ranker_split)
        return
    from movierec.core.progress import track
    from movierec.data.movielens import fetch, load_tables

    if "streaming" in args.protocols:  # its own tables: evaluation/bench_streaming.py
        import bench_streaming

        options = ["--dataset", args.dataset, *shlex.split(args.streaming)]
        bench_streaming.report(bench_streaming.run(bench_streaming.arguments(options)))
    args.protocols = [p for p in args.protocols if p != "streaming"]
    if not args.protocols:
        return
    s = _settings()
    fetch(s, args.dataset)
    tables = load_tables(s, args.dataset)
    rows, slice_rows, mitigation_table = [], [], None
    for protocol in track(args.protocols, "offline benchmark", unit="protocols"):
        row, per_slice, mitigations = _protocol(args, tables, protocol)
        rows.append(row)
        slice_rows += per_slice
        mitigation_table = mitigation_table if mitigations is None else mitigations
        print(json.dumps(row), json.dumps(per_slice), sep="\n", flush=True)
    _report(args, pd.DataFrame(rows), pd.DataFrame(slice_rows), mitigation_table)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k", choices=["ml-100k", "ml-1m"])
    parser.add_argument("--protocols", nargs="+", default=["random", "time", "user5"])
    parser.add_argument("--no-svdpp", action="store_true", help="leave SVD++ out (slow on ml-1m)")
    parser.add_argument(
        "--streaming",
        default="",
        help='bench_streaming.py\'s options for the protocol streaming: --streaming="--days 4"',
    )
    parser.add_argument("--no-by-rating", action="store_true")
    parser.add_argument(
        "--child", nargs=3, metavar=("TRAIN", "TEST", "OUT"), help=argparse.SUPPRESS
    )
    parser.add_argument("--by-rating", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ranker-split", default="random", help=argparse.SUPPRESS)
    parser.add_argument(
        "--mitigations",
        action="store_true",
        help="also the long-tail and genre-diversity settings (on the first protocol)",
    )
    args = parser.parse_args()
    offline = set(args.protocols) - {"streaming"}
    if offline and not (args.no_svdpp or args.child) and not importlib.util.find_spec("surprise"):
        parser.error(
            "SVD++ needs scikit-surprise (the bench group): run `make bench`, or --no-svdpp"
        )
    return args


def _protocol(
    args: argparse.Namespace, tables: Any, protocol: str
) -> tuple[dict[str, Any], list[dict[str, Any]], pd.DataFrame | None]:
    """One protocol: ours and the baselines, overall and per slice."""
    import tempfile

    movies = tables.movies["movie_id"].to_numpy()
    train, test = splits(tables.ratings, protocol)
    names = slices(train, test)
    wtest, cold = test[names != "new_user"], test[names == "new_user"]
    with tempfile.TemporaryDirectory() as tmp:
        ours = run_ours(
            train,
            test,
            args.dataset,
            Path(tmp),
            by_rating=not args.no_by_rating,
            mitigations=args.mitigations and protocol == args.protocols[0],
            ranker_split=RANKER_SPLIT[protocol],
        )
    mitigations = pd.DataFrame(ours.pop("mitigations")) if "mitigations" in ours else None
    preds = {"ours": ours["pred"], "mean": np.full(len(test), train["rating"].mean())}
    svdpp_s = None
    if not args.no_svdpp:
        sv = run_svdpp(train, test)
        preds["svdpp"], svdpp_s = sv["pred"], sv["seconds"]
    rmse = {name: rmse_by_slice(test, pred, names) for name, pred in preds.items()}
    ea, po = run_ease(train, wtest, movies), run_popularity(train, wtest, movies)
    best_baseline = max(ea["ndcg@10"], po["ndcg@10"])
    row = {
        "protocol": protocol,
        "test_rows": len(test),
        "new_user_share": float((names == "new_user").mean()),
        **{f"{name}_rmse": values["all"] for name, values in rmse.items()},
        "ours_ndcg": ours["ndcg@10"],
        "ease_ndcg": ea["ndcg@10"],
        "pop_ndcg": po["ndcg@10"],
        "ndcg_ratio": ours["ndcg@10"] / best_baseline,
        "ours_recall@20": ours["recall@20"],
        "ease_recall@20": ea["recall@20"],
        "ours_coverage": ours["coverage"],
        "ease_coverage": ea["coverage"],
        "new_user_ndcg_ours": ours["new_user_ndcg@10"],
        "new_user_ndcg_pop": run_popularity(train, cold, movies)["ndcg@10"] if len(cold) else None,
        "ours_train_s": ours["seconds_total"],
        "ours_cpu_s": ours["cpu_seconds"],
        "ours_peak_mb": ours["maxrss_mb"],
        "svdpp_s": svdpp_s,
        "ours_by_rating_ndcg_300u": ours.get("by_rating_ndcg@10"),
        "ours_ndcg_300u": ours.get("same_users_ndcg@10"),
    }
    per_slice = [
        {"protocol": protocol, "slice": sl, "rows": int((names == sl).sum())}
        | {name: values[sl] for name, values in rmse.items()}
        for sl in ("known", "new_user", "new_movie")
        if (names == sl).any()
    ]
    return row, per_slice, mitigations


def _report(
    args: argparse.Namespace,
    table: pd.DataFrame,
    slice_table: pd.DataFrame,
    mitigation_table: pd.DataFrame | None,
) -> None:
    results_dir = REPO / "evaluation" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    pd.set_option("display.width", 250)
    fmt = {"float_format": lambda v: f"{v:.4f}", "index": False}
    print(f"\ndataset {args.dataset}")
    print(table.to_string(**fmt))
    print("\nRMSE per slice (ours, the training mean, SVD++ where run)")
    print(slice_table.to_string(**fmt))
    if "svdpp_rmse" in table:
        print(f"RMSE below SVD++ on every protocol: {all(table.ours_rmse < table.svdpp_rmse)}")
    big = slice_table[slice_table["rows"] >= 50]
    below = bool((big["ours"] < big["mean"]).all())
    print(f"RMSE below the training mean on every slice of >= 50 rows: {below}")
    ratios = ", ".join(f"{v:.3f}" for v in table.ndcg_ratio)
    print(
        "NDCG@10 >= 1.05 x the better of EASE and popularity on every protocol: "
        f"{all(table.ndcg_ratio >= 1.05)} (ratios {ratios})"
    )
    limit = 120 if args.dataset == "ml-100k" else 300
    print(
        f"training with tuning: max {table['ours_train_s'].max():.1f} s wall, "
        f"{table['ours_cpu_s'].max():.1f} s CPU (target < {limit} s on 2 cores); "
        f"peak memory max {table['ours_peak_mb'].max():.0f} MB"
    )
    table.to_csv(results_dir / f"bench_offline_{args.dataset}.csv", index=False)
    slice_table.to_csv(results_dir / f"bench_offline_{args.dataset}_slices.csv", index=False)
    if mitigation_table is not None:
        print()
        print(f"mitigations (protocol {args.protocols[0]}, warm test users, lists of 20)")
        print(mitigation_table.to_string(**fmt))
        mitigation_table.to_csv(results_dir / f"mitigations_{args.dataset}.csv", index=False)


if __name__ == "__main__":
    main()
