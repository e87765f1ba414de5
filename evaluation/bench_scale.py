"""Scale benchmark: what each cost of the service grows with, from ml-100k to ml-1m to a
synthetic bundle of 1,000,000 users x 27,000 movies.

    .venv/bin/python evaluation/bench_scale.py [--datasets ml-100k,ml-1m] [--seconds 10]
    .venv/bin/python evaluation/bench_scale.py --datasets ml-100k --seconds 3   # quick check

For ml-100k and ml-1m (the real data sets, as the project fetches them): the events are
replayed and ingested into .cache/bench-scale/<dataset> once; then `movierec train --no-tune`
runs as a child process, timed, its peak memory its maximum resident set (wait4's ru_maxrss).

No data set of a million users is available here, so the synthetic bundle is made from the
ml-1m model's fitted state (a child process, timed and measured the same way): each synthetic
user is a random ml-1m user's fitted rows (MF and ALS factors and bias, feature rows, watched
movies), each synthetic movie a random ml-1m movie's (the first 3,706 are the originals, the
others copies under new ids; a watched movie maps to a random copy of itself), each movie's
item neighbours are its source's mapped the same way, every user gets a 20-movie precomputed
list drawn by popularity, and the ml-1m boosters, cold-start list and parameters are kept. The
files are written as the trainer's `write_bundle_files` writes them (`TwoStageModel.save`,
`PrecomputedLists`, the neighbours, `recommendations.parquet`, `cold_start.json`) and registered
with `save_bundle`. EASE is saved as its neighbours only (no dense item-item matrix).

For every row the bundle is served by a real gunicorn (the service's config, 2 workers);
200 users get 10 new watches each in the online store (so fold-in runs), wrk loads /recommend
over known users and those for --seconds, and each worker's PSS and USS are read from
/proc/<pid>/smaps_rollup (PSS shares a mapped page among the processes that map it). Target
(issue 15): worker PSS <= 300 MB for the synthetic bundle. The last line is the table as JSON.
"""

from __future__ import annotations

import argparse
import copy as copy_module
import json
import os
import random
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import requests
import scipy.sparse as sp
from bench_serve import HOME, gunicorn, worker_memory, wrk

from movierec.core.schema import COLD_START, METADATA, RECOMMENDATIONS
from movierec.core.settings import Settings
from movierec.data.events import format_watch, parse_lines
from movierec.data.online_sqlite import SqliteHistoryStore
from movierec.data.positions import FilePosition
from movierec.data.sources import Batch
from movierec.model.cf import Index, ItemNeighbours
from movierec.model.features import BASE_ARRAYS, FeatureBase
from movierec.model.recommender import TwoStageModel, TwoStageParts
from movierec.model.stage import CFStage
from movierec.registry.bundles import bundle_path, new_version, save_bundle
from movierec.registry.lists import PrecomputedLists
from movierec.registry.routing import read_routing, set_stable

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / ".cache" / "bench-scale"
APP = "movierec.serve:create_app()"
SYNTHETIC = "synthetic"
USERS, MOVIES = 1_000_000, 27_000
FOLD_USERS, NEW = 200, 10


def home_of(name: str) -> Path:
    return HOME if name == "ml-1m" else ROOT / name  # bench_serve's ml-1m model: trained once


def settings_for(name: str) -> Settings:
    dataset = "ml-1m" if name == SYNTHETIC else name
    return Settings.from_env({}, home=home_of(name), cache_dir=REPO / ".cache", dataset=dataset)


def env_for(name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOVIEREC_")}
    return env | {
        "MOVIEREC_HOME": str(home_of(name)),
        "MOVIEREC_DATASET": settings_for(name).data.dataset,
        "MOVIEREC_CACHE_DIR": str(REPO / ".cache"),
        "MOVIEREC_HOST": "127.0.0.1",
        "MOVIEREC_WORKERS": "2",
        "OPENBLAS_NUM_THREADS": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(home_of(name) / "prometheus-multiproc"),
    }


def timed_child(args: list[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    """Run a child to its end: (seconds, peak resident MB)."""
    t0 = time.perf_counter()
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=out)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): see {log}")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024


# ---- real data sets -------------------------------------------------------------------------
def train_real(name: str, retrain: bool) -> dict[str, Any]:
    """Replay and ingest once, then train, timed (its figures kept in `train.json`); a model
    already there is reused with the figures of the run that trained it (--retrain: anew)."""
    from movierec.data.ingest import ingest
    from movierec.data.movielens import fetch
    from movierec.data.replay import replay

    s = settings_for(name)
    figures = s.home / "train.json"
    if not retrain and read_routing(s) is not None:
        if figures.exists():
            return dict(json.loads(figures.read_text()), make="train (earlier run)")
        meta = json.loads((bundle_path(s, read_routing(s).stable) / METADATA).read_text())
        seconds = float(meta.get("fit_info", {}).get("seconds", float("nan")))
        return {"make": "fit (metadata)", "seconds": seconds, "peak_mb": float("nan")}
    if name == "ml-1m":
        raise RuntimeError("ml-1m: run evaluation/bench_serve.py first (it trains the model)")
    if not (s.home / "events-ready").exists():
        shutil.rmtree(s.home, ignore_errors=True)
        s.home.mkdir(parents=True)
        fetch(s, name)
        replay(s, name, s.data.event_source)
        ingest(s)
        (s.home / "events-ready").touch()
    shutil.rmtree(s.models_path, ignore_errors=True)
    cmd = [sys.executable, "-m", "movierec.cli", "train", "--no-tune", "--serve-if-none"]
    seconds, peak = timed_child(cmd, env_for(name), s.home / "train.log")
    out = {"make": "train --no-tune", "seconds": seconds, "peak_mb": peak}
    figures.write_text(json.dumps(out))
    return out


# ---- the synthetic bundle -------------------------------------------------------------------
def make_synthetic(source: str, users: int, movies: int) -> None:
    """The synthetic bundle (run as a child process: see the module docstring)."""
    src = settings_for(source)
    routing = read_routing(src)
    if routing is None:
        raise RuntimeError("ml-1m has no model: run with --datasets ml-1m first")
    src_dir = bundle_path(src, routing.stable)
    model = TwoStageModel.load(src_dir, mmap=True)
    rng = np.random.default_rng(15)
    # Users and movies: each a random ml-1m one (the original movies first)
    stage = model.stage
    n_users, n_movies = len(stage.index.users), len(stage.index.movies)
    urow = rng.integers(0, n_users, users)
    mrow = np.concatenate([np.arange(n_movies), rng.integers(0, n_movies, movies - n_movies)])
    names = stage.index.movies[mrow].tolist()
    ids = np.array([m if j < n_movies else f"{m}+c{j}" for j, m in enumerate(names)])
    order = np.argsort(ids)  # the index keeps movies sorted
    mrow = mrow[order]  # position -> source movie
    copy = Copies(mrow, rng)
    index = Index(np.arange(1, users + 1, dtype=np.int64), ids[order])
    # Watched movies, item neighbours, precomputed lists
    seen = synthetic_seen(stage.seen, urow, copy)
    ease = synthetic_neighbours(stage.ease, mrow, copy)
    lists = synthetic_lists(
        index, stage.base.item_stats[mrow, stage.base.ITEM_COLS.index("i_log_pop")], rng
    )
    # The model: fitted rows of the sources
    home = settings_for(SYNTHETIC)
    work = home.home / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rp3 = copy_module.copy(stage.rp3)
    rp3.W = synthetic_neighbours(stage.rp3.W, mrow, copy)
    mf = copy_module.copy(stage.mf)
    mf.bu, mf.bi, mf.P, mf.Q = mf.bu[urow], mf.bi[mrow], mf.P[urow], mf.Q[mrow]
    base = stage.base
    arrays = {n: getattr(base, n)[mrow if n.startswith("item") else urow] for n in BASE_ARRAYS}
    parts = TwoStageParts(
        CFStage(
            index,
            FeatureBase.from_saved(index, arrays, base.scalars()),
            mf,
            stage.als_u[urow],
            stage.als_i[mrow],
            ease,
            rp3,
            seen,
        ),
        model.parts.rating,
        model.parts.ranker,
        model.parts.cold,
    )
    fit_info = dict(model.fit_info, synthetic=f"{users} users x {movies} movies")
    synthetic = TwoStageModel(model.params, parts, threads=model.threads, fit_info=fit_info)
    # The files, as the trainer writes them, registered
    out = work / "bundle"
    out.mkdir()
    files = [*synthetic.save(out), *lists.save(out)]
    files += write_tables(out, lists, synthetic.cold_start(None, 20))
    meta = json.loads((src_dir / METADATA).read_text())
    version = new_version()
    save_bundle(
        home,
        version,
        {n: out / n for n in files},
        {"metrics": {}, "training_cutoff": meta.get("training_cutoff"), "synthetic": True},
    )
    set_stable(home, version, "scale benchmark")
    shutil.rmtree(work, ignore_errors=True)


N = TypeVar("N", bound=ItemNeighbours)


class Copies:
    """Maps a source movie to a random synthetic copy of it (its index position)."""

    def __init__(self, source_of: np.ndarray, rng: np.random.Generator):
        self.by_source = np.argsort(source_of, kind="stable")
        self.first = np.searchsorted(source_of[self.by_source], np.arange(source_of.max() + 1))
        self.count = np.bincount(source_of)
        self.rng = rng

    def __call__(self, movies: np.ndarray) -> np.ndarray:
        movies = np.asarray(movies, dtype=np.int64)
        pick = (self.rng.random(movies.size) * self.count[movies]).astype(np.int64)
        return self.by_source[self.first[movies] + pick]


def synthetic_seen(seen: sp.csr_matrix, urow: np.ndarray, copy: Copies) -> sp.csr_matrix:
    """Each synthetic user's watched movies: their source's, each a copy of itself."""
    lengths = (seen.indptr[1:] - seen.indptr[:-1])[urow].astype(np.int64)
    ends = np.cumsum(lengths)
    flat = np.arange(ends[-1]) + np.repeat(seen.indptr[:-1][urow] - (ends - lengths), lengths)
    cols = copy(seen.indices[flat])
    movies = copy.by_source.size
    keys = np.unique(np.repeat(np.arange(urow.size, dtype=np.int64), lengths) * movies + cols)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(keys // movies, minlength=urow.size))])
    indices = (keys % movies).astype(np.int32)
    ones = np.broadcast_to(np.float32(1.0), indices.shape)
    return sp.csr_matrix((ones, indices, indptr.astype(np.int64)), shape=(urow.size, movies))


def synthetic_neighbours(src: N, mrow: np.ndarray, copy: Copies) -> N:
    """Each movie's neighbours: its source's, each a copy of itself, with the same weights."""
    k = int(src.indptr[1] - src.indptr[0])
    indices = np.asarray(src.indices).reshape(-1, k)[mrow].ravel()
    scores = np.asarray(src.scores).reshape(-1, k)[mrow].ravel()
    indptr = np.arange(0, mrow.size * k + 1, k, dtype=np.int64)
    return type(src)(indptr, copy(indices).astype(np.int32), scores)


def synthetic_lists(
    index: Index, log_pop: np.ndarray, rng: np.random.Generator
) -> PrecomputedLists:
    """20 distinct movies per user among the 1,000 most popular."""
    top = np.argsort(-np.asarray(log_pop))[:1000]
    start = rng.integers(0, 1000, (index.users.size, 1))
    step = rng.choice(np.array([s for s in range(1, 1000, 2) if s % 5]), (index.users.size, 1))
    items = top[(start + step * np.arange(20)) % 1000].astype(np.int32)
    return PrecomputedLists(index.users, items, index.movies)


def write_tables(out: Path, lists: PrecomputedLists, cold: list[str]) -> list[str]:
    """`recommendations.parquet` and `cold_start.json`, as `write_bundle_files` writes them."""
    movies = lists.movies.tolist()
    items = [",".join(movies[i] for i in row) for row in lists.items.tolist()]
    table = pa.table({"user_id": pa.array(lists.users, pa.int64()), "items": items})
    pq.write_table(table, out / RECOMMENDATIONS)
    (out / COLD_START).write_text(json.dumps({"items": cold}))
    return [RECOMMENDATIONS, COLD_START]


# ---- serving --------------------------------------------------------------------------------
def bundle_size(name: str) -> tuple[float, float, str]:
    """The stable bundle's size in MB, its largest file's, and that file."""
    s = settings_for(name)
    routing = read_routing(s)
    assert routing is not None
    files = [f for f in bundle_path(s, routing.stable).iterdir() if f.is_file()]
    largest = max(files, key=lambda f: f.stat().st_size)
    total = sum(f.stat().st_size for f in files)
    return total / 2**20, largest.stat().st_size / 2**20, largest.name


def known_users(name: str, count: int) -> list[int]:
    s = settings_for(name)
    routing = read_routing(s)
    assert routing is not None
    users = np.load(bundle_path(s, routing.stable) / "lists.users.npy", mmap_mode="r")
    rows = np.random.default_rng(3).choice(users.size, min(count, users.size), replace=False)
    return sorted(int(u) for u in users[rows])


def new_watches(name: str, users: list[int]) -> None:
    """NEW watches after the training cutoff for each user, in the online store (emptied)."""
    s = settings_for(name)
    routing = read_routing(s)
    assert routing is not None
    movies = np.load(bundle_path(s, routing.stable) / "cf.movies.npy", mmap_mode="r")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{s.online_store_file}{suffix}").unlink(missing_ok=True)
    s.online_store_file.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(5)
    at = datetime.now(UTC) - timedelta(days=1)
    lines = [
        format_watch(at + timedelta(minutes=j), u, str(movies[rng.randrange(movies.size)]), 1)
        for u in users
        for j in range(NEW)
    ]
    store = SqliteHistoryStore(s.online_store_file)
    batch = Batch(lines, [str(i) for i in range(len(lines))], FilePosition(len(lines)))
    store.write_batch("bench-scale", batch, parse_lines(lines))
    store.close()


def serve(name: str, seconds: float) -> dict[str, Any]:
    """Worker memory under load, and a check that /recommend answers (precomputed, fold-in)."""
    users = known_users(name, 5000)
    fold = users[:FOLD_USERS]
    new_watches(name, fold)
    t0 = time.perf_counter()
    with gunicorn(APP, env_for(name), REPO) as (url, master):
        ready = time.perf_counter() - t0
        answers = [requests.get(f"{url}/recommend/{u}", timeout=30) for u in users[-3:] + fold[:3]]
        ok = all(r.status_code == 200 and len(r.text.split(",")) == 20 for r in answers)
        load = wrk(url, seconds, 16, users)
        memory = worker_memory(master)
        text = requests.get(f"{url}/metrics", timeout=30).text
    folded = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("movierec_live_answers_total{") and 'path="fold_in"' in line
    )
    return {
        "ready_s": ready,
        "answers_ok": ok,
        "rps": load["rps"],
        "p99_ms": load["p99_ms"],
        "failed": load["failed"],
        "fold_in_answers": folded,
        "pss_mb": max(w["pss"] for w in memory),
        "uss_mb": max(w["uss"] for w in memory),
        "rss_mb": max(w["rss"] for w in memory),
    }


# ---- the run --------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="ml-100k,ml-1m,synthetic")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--users", type=int, default=USERS, help="of the synthetic bundle")
    parser.add_argument("--movies", type=int, default=MOVIES, help="of the synthetic bundle")
    parser.add_argument("--source", default="ml-1m", help="the synthetic bundle's fitted model")
    parser.add_argument("--retrain", action="store_true", help="train even if a model is there")
    parser.add_argument("--make-synthetic", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_synthetic:
        make_synthetic(args.source, args.users, args.movies)
        return 0
    rows: dict[str, dict[str, Any]] = {}
    for name in args.datasets.split(","):
        # Make: train (real data sets) or build from ml-1m's fitted state (synthetic)
        if name == SYNTHETIC:
            shutil.rmtree(settings_for(name).models_path, ignore_errors=True)
            cmd = [sys.executable, __file__, "--make-synthetic", "--source", args.source]
            cmd += ["--users", str(args.users), "--movies", str(args.movies)]
            env = env_for(name) | {"PYTHONPATH": str(Path(__file__).parent)}
            ROOT.joinpath(name).mkdir(parents=True, exist_ok=True)
            seconds, peak = timed_child(cmd, env, ROOT / name / "make.log")
            row: dict[str, Any] = {
                "make": f"from {args.source}'s fit",
                "seconds": seconds,
                "peak_mb": peak,
            }
        else:
            row = train_real(name, args.retrain)
        s = settings_for(name)
        routing = read_routing(s)
        assert routing is not None
        meta = json.loads((bundle_path(s, routing.stable) / "metadata.json").read_text())
        users = np.load(bundle_path(s, routing.stable) / "cf.users.npy", mmap_mode="r").size
        movies = np.load(bundle_path(s, routing.stable) / "cf.movies.npy", mmap_mode="r").size
        row |= {"users": int(users), "movies": int(movies), "version": meta["version"]}
        row["bundle_mb"], row["largest_mb"], row["largest_file"] = bundle_size(name)
        # Serve
        row |= serve(name, args.seconds)
        rows[name] = row
        print(f"{name}: {json.dumps(row, default=str)}", flush=True)
    print_table(rows)
    return 0


def print_table(rows: dict[str, dict[str, Any]]) -> None:
    print()
    print(
        f"{'':10}{'users':>10}{'movies':>8}  {'made by':17}{'time s':>8}{'peak MB':>9}"
        f"{'bundle MB':>11}  {'largest file (MB)':30}{'ready s':>8}{'PSS MB':>8}{'USS MB':>8}"
        f"{'RSS MB':>8}{'req/s':>7}{'p99 ms':>8}"
    )
    for name, r in rows.items():
        largest = f"{r['largest_file']} ({r['largest_mb']:.0f})"
        print(
            f"{name:10}{r['users']:>10,}{r['movies']:>8,}  {r['make']:17}{r['seconds']:>8.0f}"
            f"{r['peak_mb']:>9.0f}{r['bundle_mb']:>11.0f}  {largest:30}{r['ready_s']:>8.1f}"
            f"{r['pss_mb']:>8.1f}{r['uss_mb']:>8.1f}{r['rss_mb']:>8.1f}{r['rps']:>7.0f}"
            f"{r['p99_ms']:>8.1f}"
        )
    print()
    checks = {}
    for name, r in rows.items():
        target = 300.0 if name == SYNTHETIC else 150.0
        ok = r["pss_mb"] <= target and r["answers_ok"] and r["failed"] == 0
        checks[name] = ok
        print(
            f"{name}: worker PSS {r['pss_mb']:.1f} MB (target <= {target:.0f}), /recommend "
            f"{'answers' if r['answers_ok'] else 'FAILED'}, {r['fold_in_answers']:.0f} fold-in "
            f"answers, {r['failed']} failed requests: {'PASS' if ok else 'FAIL'}"
        )
    print(json.dumps({"rows": rows, "pass": checks}, default=str, separators=(",", ":")))


if __name__ == "__main__":
    sys.exit(main())
