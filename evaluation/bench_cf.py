"""The CF stage's cost by size, and its item-item quality on ml-1m.

    .venv/bin/python evaluation/bench_cf.py [--users 100000 300000 1000000] [--movies 27000]
        [--per-user 20] [--parts ease rp3 mf] [--ease-max-movies 10000] [--src DIR]
    .venv/bin/python evaluation/bench_cf.py --quality [--protocols time random]

Cost: each CF part is fitted in a child process of its own, on ml-1m's ratings and on random
power-law data (27,000 movies by default, each user `--per-user` interactions on average,
long-tailed activity and popularity: cost figures, not a realistic site), and the child's wall
time and peak resident memory are printed, with each row's growth against the previous size
(time per interaction, memory); the matrices are written once under `--work`, so a child
holds only its matrix (the "data" column) and what the fit adds. `--src DIR` runs the same
parts from another checkout's `src` (the code before a change: EASE dense then cut to its
neighbours, RP3beta dense).
Parts: `ease` (EASE's neighbours, `model.training.item_item`), `rp3` (RP3beta's neighbours),
`mf` (the explicit biased MF by ALS, 8 iterations, 32 factors, on the same matrix with random
ratings).

Quality (`--quality`): EASE-only NDCG@10 and Recall@20 on ml-1m's protocols as
`bench_offline.py` computes them (its splits, its metrics, warm test users): the dense EASE
(every weight), its 200 strongest neighbours per movie, and EASE fitted only on the N most
interacted movies (what a catalog larger than `EASE_MAX_MOVIES` gets), N below ml-1m's 3,706.
The machine is shared: times are noisy, memory is not.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]
SEED = 0


def synthetic_matrix(users: int, movies: int, per_user: float) -> sp.csr_matrix:
    """users x movies, 1 where watched: activity and popularity both power-law (Zipf-like
    popularity over the movies' ranks; log-normal activity, at least one interaction)."""
    rng = np.random.default_rng(SEED)
    activity = rng.lognormal(0.0, 1.1, users)
    counts = np.maximum(1, np.round(activity * per_user / activity.mean())).astype(np.int64)
    counts = np.minimum(counts, movies // 4)
    popularity = 1.0 / np.power(np.arange(movies) + 10.0, 1.0)
    cdf = np.cumsum(popularity / popularity.sum())
    rows = np.repeat(np.arange(users, dtype=np.int32), counts)
    cols = np.minimum(np.searchsorted(cdf, rng.random(rows.size)), movies - 1).astype(np.int32)
    X = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(users, movies))
    X.sum_duplicates()
    X.data[:] = 1.0
    return X


def ml1m_matrix() -> tuple[sp.csr_matrix, np.ndarray]:
    """ml-1m's users x movies matrix and its ratings (fetched by `movierec data fetch`)."""
    from movierec.model.cf import Index, interaction_matrix

    ratings = _ml1m_ratings()
    index = Index.build(ratings["user_id"].to_numpy(), ratings["movie_id"].to_numpy())
    u, i = index.uidx(ratings["user_id"].to_numpy()), index.midx(ratings["movie_id"].to_numpy())
    X = interaction_matrix(u, i, len(index.users), len(index.movies))
    r = ratings["rating"].to_numpy(dtype=float)
    order = np.lexsort((i, u))  # X's entry order: its ratings line up with X.data
    return X, r[order]


def _ml1m_ratings() -> pd.DataFrame:
    from movierec.core.settings import Settings
    from movierec.data.movielens import load_tables

    home = Path(os.environ.get("MOVIEREC_HOME", REPO / ".cache" / "test-data"))
    settings = Settings.from_env({}, home=home, grouplens_url="")
    return load_tables(settings, "ml-1m").ratings


def fit_part(part: str, X: sp.csr_matrix, r: np.ndarray, ease_max_movies: int) -> None:
    """Fits one CF part as the model does (`ModelParams`' defaults)."""
    from movierec.model import cf

    if part == "ease":
        try:
            from movierec.model.training.item_item import ease_neighbours
        except ImportError:  # the code before: dense EASE, then its strongest weights
            cf.ItemNeighbours.from_dense(cf.EASE(500.0).fit(X).B, 200)
        else:
            ease_neighbours(X, 500.0, 200, ease_max_movies)
    elif part == "rp3":
        cf.RP3beta(0.5, 100).fit(X)
    elif part == "mf":
        u = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
        cf.BiasedMF(32, 8.0, iters=8, seed=SEED).fit(u, X.indices, r, X.shape[0], X.shape[1])
    else:
        raise ValueError(part)


def _prepare(users: int, args: argparse.Namespace) -> Path:
    """The matrix and ratings of a size, written once under `--work` (a child process of its
    own: the fit's child then holds only them)."""
    path = Path(args.work) / f"X_{users}_{args.movies}_{args.per_user:g}.npz"
    if path.exists():
        return path
    if users == 0:
        X, r = ml1m_matrix()
    else:
        X = synthetic_matrix(users, args.movies, args.per_user)
        r = np.random.default_rng(SEED).integers(1, 6, X.nnz).astype(float)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, indptr=X.indptr, indices=X.indices, shape=np.array(X.shape), ratings=r)
    return path


def _child(args: argparse.Namespace) -> None:
    path = _prepare(int(args.child_users), args)
    if args.child == "prepare":
        return
    arrays = np.load(path)
    indices = arrays["indices"]
    ones = np.ones(indices.size, dtype=np.float32)
    X = sp.csr_matrix((ones, indices, arrays["indptr"]), shape=tuple(arrays["shape"]))
    r = arrays["ratings"]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    fit_part(args.child, X, r, args.ease_max_movies)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = {"users": X.shape[0], "movies": X.shape[1], "interactions": X.nnz}
    print(json.dumps(row | {"seconds": seconds, "peak_mb": peak, "data_mb": before}))


def cost(args: argparse.Namespace) -> None:
    src = Path(args.src).resolve() if args.src else REPO / "src"
    env = dict(os.environ, PYTHONPATH=str(src))
    print(f"code: {src}")
    for part in args.parts:
        previous: dict[str, Any] | None = None
        for users in [0, *args.users]:  # 0: ml-1m
            for step in ("prepare", part):  # the data with the current code, then the fit
                command = [sys.executable, __file__, "--child", step, "--child-users", str(users)]
                command += ["--movies", str(args.movies), "--per-user", str(args.per_user)]
                command += ["--ease-max-movies", str(args.ease_max_movies), "--work", args.work]
                run_env = env if step == part else dict(os.environ, PYTHONPATH=str(REPO / "src"))
                done = subprocess.run(command, env=run_env, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{part} {users or 'ml-1m'}: failed\n{done.stderr[-2000:]}", flush=True)
                break
            row = json.loads(done.stdout.strip().splitlines()[-1])
            print(_cost_line(part, row, previous), flush=True)
            previous = row if users else None


def _cost_line(part: str, row: dict[str, Any], previous: dict[str, Any] | None) -> str:
    name = "ml-1m" if previous is None and row["users"] == 6040 else "synthetic"
    line = (
        f"{part:5} {name:9} users {row['users']:>9,} movies {row['movies']:>6,} "
        f"interactions {row['interactions']:>11,}: {row['seconds']:8.1f} s, "
        f"peak {row['peak_mb']:7.0f} MB (data {row['data_mb']:.0f} MB)"
    )
    if previous is not None:
        per = row["seconds"] / row["interactions"]
        per_before = previous["seconds"] / previous["interactions"]
        grown = row["interactions"] / previous["interactions"]
        line += (
            f"; x{grown:.1f} interactions: time/interaction x{per / per_before:.2f}, "
            f"peak x{row['peak_mb'] / previous['peak_mb']:.2f}"
        )
    return line


def quality(args: argparse.Namespace) -> None:
    from bench_offline import _ranking, slices, splits

    from movierec.model.cf import EASE, Index, ItemNeighbours, interaction_matrix
    from movierec.model.training.item_item import ease_neighbours

    ratings = _ml1m_ratings()
    for protocol in args.protocols:
        train, test = splits(ratings, protocol)
        wtest = test[slices(train, test) != "new_user"]
        index = Index.build(train["user_id"].to_numpy(), ratings["movie_id"].to_numpy())
        u = index.uidx(train["user_id"].to_numpy())
        X = interaction_matrix(
            u, index.midx(train["movie_id"].to_numpy()), len(index.users), len(index.movies)
        )
        variants: dict[str, ItemNeighbours] = {}
        dense = EASE(500.0).fit(X).B
        variants["dense"] = ItemNeighbours.from_dense(dense, dense.shape[0])
        variants["200 neighbours"] = ease_neighbours(X, 500.0, 200)
        for n in args.top_movies:
            variants[f"200 neighbours, top {n} movies"] = ease_neighbours(X, 500.0, 200, n)
        users = np.unique(wtest["user_id"].to_numpy())
        for name, neighbours in variants.items():
            topk = _top20(neighbours, X, index, users)
            metrics = _ranking(topk, wtest)
            print(
                f"{protocol:6} EASE {name:32} "
                + " ".join(f"{k} {v:.4f}" for k, v in metrics.items()),
                flush=True,
            )


def _top20(
    neighbours: Any, X: sp.csr_matrix, index: Any, users: np.ndarray
) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for start in range(0, users.size, 1000):
        chunk = users[start : start + 1000]
        rows = X[index.uidx(chunk)]
        S = neighbours.scores_of(rows).astype(np.float64)
        S[rows.nonzero()] = -np.inf
        top = np.argsort(-S, axis=1, kind="stable")[:, :20]
        out.update({int(uid): list(index.movies[row]) for uid, row in zip(chunk, top, strict=True)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="*", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--movies", type=int, default=27_000)
    parser.add_argument("--per-user", type=float, default=20.0)
    parser.add_argument("--parts", nargs="+", default=["ease", "rp3", "mf"])
    parser.add_argument("--ease-max-movies", type=int, default=10_000)
    parser.add_argument("--src", help="another checkout's src (the code before a change)")
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--protocols", nargs="+", default=["time", "random"])
    parser.add_argument("--top-movies", type=int, nargs="*", default=[2000, 1000])
    parser.add_argument("--work", default="/tmp/movierec-bench-cf", help="matrices kept here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-users", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
    elif args.quality:
        quality(args)
    else:
        cost(args)


if __name__ == "__main__":
    main()
