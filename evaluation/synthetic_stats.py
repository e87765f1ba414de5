"""How close the synthetic site is to ml-1m, and what it costs to make.

    .venv/bin/python evaluation/synthetic_stats.py [--users 1000000 --movies 27000
        --interactions 20000000] [--home DIR] [--signal] [--min-available-gb 3]

Runs `movierec replay --synthetic` in a child process under DIR (a temporary folder by
default; ml-1m is fetched there from the cache), watches its memory (the child is stopped
when the machine's available memory falls below --min-available-gb, and the run reported as
stopped), then prints, beside ml-1m's: interactions per user and per movie (quantiles and
Gini), the rating histogram, and with --signal (small sizes: a dense user x movie matrix)
the hit rate at 10 of item co-occurrence over popularity's, each user's last movie held out.
Time is the child's wall time; peak RSS its maximum resident set. Never run in CI: the
course's size writes about 12 GB of log and takes tens of minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--movies", type=int, default=27_000)
    parser.add_argument("--interactions", type=int, default=20_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--home", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--signal", action="store_true", help="also the CF signal (small sizes)")
    parser.add_argument("--min-available-gb", type=float, default=3.0)
    parser.add_argument(
        "--existing", action="store_true", help="only compare the dataset already in --home"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.home and args.home.parent) as tmp:
        home = args.home or Path(tmp)
        home.mkdir(parents=True, exist_ok=True)
        if not args.existing:
            run = _generate(home, args)
            print(f"{args.users:,} users x {args.movies:,} movies x {args.interactions:,} asked")
            print(f"  {run}")
            if run.startswith("stopped"):
                sys.exit(1)
        data = home / "data" / "movielens"
        _compare(_ratings(data / "ml-1m"), _ratings(data / "synthetic"), args.signal)


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MOVIEREC_HOME=str(home),
        MOVIEREC_CACHE_DIR=str(REPO / ".cache"),
        MOVIEREC_GROUPLENS_URL="",
        PYTHONPATH=str(REPO / "src"),
    )
    return env


def _generate(home: Path, args: argparse.Namespace) -> str:
    """Run the generator; its wall time, peak RSS and lines, or why it was stopped."""
    cli = [sys.executable, "-c", "from movierec.cli.main import main; raise SystemExit(main())"]
    env, quiet = _env(home), subprocess.DEVNULL
    subprocess.run([*cli, "data", "fetch", "--dataset", "ml-1m"], env=env, stdout=quiet, check=True)
    log = home / "events.log"
    command = [
        *cli, "replay", "--synthetic", "--users", str(args.users), "--movies", str(args.movies),
        "--interactions", str(args.interactions), "--seed", str(args.seed), "--out", str(log),
    ]  # fmt: skip
    start = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=quiet)
    stopped, status, peak_kb = _watch(child, args.min_available_gb * 2**20)
    seconds = time.perf_counter() - start
    peak_gb = peak_kb / 2**20
    if stopped:
        return f"stopped after {seconds:.0f} s: {stopped} (peak RSS {peak_gb:.2f} GB)"
    if status:
        raise SystemExit(f"the generator failed with wait status {status}")
    lines = _count_lines(log)
    size = log.stat().st_size / 2**30
    return (
        f"{seconds:.0f} s wall, peak RSS {peak_gb:.2f} GB, {lines:,} lines "
        f"({lines / seconds:,.0f}/s), {size:.1f} GB of log"
    )


def _watch(child: subprocess.Popen[bytes], min_available_kb: float) -> tuple[str | None, int, int]:
    """Wait for the child, stopping it (SIGTERM, then SIGKILL) when memory runs short; why it
    was stopped, its wait status and its own peak RSS in kB."""
    stopped, since = None, 0.0
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            return stopped, status, usage.ru_maxrss
        available = _meminfo("MemAvailable")
        if stopped is None and available < min_available_kb:
            stopped, since = f"available memory {available / 2**20:.1f} GB", time.monotonic()
            child.send_signal(signal.SIGTERM)
        elif stopped is not None and time.monotonic() - since > 30:
            child.kill()
        time.sleep(0.5)


def _meminfo(field: str) -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return float(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/meminfo")


def _count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            n += block.count(b"\n")
    return n


def _ratings(folder: Path) -> pa.Table:
    return pq.read_table(
        folder / "ratings.parquet", columns=["user_id", "movie_id", "rating", "timestamp"]
    )


def _counts(table: pa.Table, key: str) -> np.ndarray:
    return table.group_by(key).aggregate([(key, "count")]).column(f"{key}_count").to_numpy()


def gini(values: np.ndarray) -> float:
    x = np.sort(values.astype(float))
    n = len(x)
    return float((2 * np.arange(1, n + 1) - n - 1).dot(x) / (n * x.sum()))


def _compare(real: pa.Table, synthetic: pa.Table, signal_too: bool) -> None:
    rows: list[tuple[str, str, str]] = []
    for what, key in (("per user", "user_id"), ("per movie", "movie_id")):
        a, b = _counts(real, key), _counts(synthetic, key)
        for q in QUANTILES:
            rows.append((f"{what} q{q:g}", f"{np.quantile(a, q):.0f}", f"{np.quantile(b, q):.0f}"))
        rows.append((f"{what} mean", f"{a.mean():.1f}", f"{b.mean():.1f}"))
        rows.append((f"{what} Gini", f"{gini(a):.3f}", f"{gini(b):.3f}"))
    for r in range(1, 6):
        shares = [_share(t, r) for t in (real, synthetic)]
        rows.append((f"rating {r}", f"{shares[0]:.3f}", f"{shares[1]:.3f}"))
    rows.append(("ratings", f"{real.num_rows:,}", f"{synthetic.num_rows:,}"))
    if signal_too:
        rows.append(
            ("CF hit@10 / popularity's", f"{cf_signal(real):.2f}", f"{cf_signal(synthetic):.2f}")
        )
    width = max(len(r[0]) for r in rows)
    print(f"{'':{width}}  {'ml-1m':>12}  {'synthetic':>12}")
    for name, left, right in rows:
        print(f"{name:{width}}  {left:>12}  {right:>12}")


def _share(table: pa.Table, rating: int) -> float:
    ratings = table.column("rating").to_numpy()
    return float((ratings == rating).mean())


def cf_signal(table: pa.Table) -> float:
    """Hit rate at 10 of item co-occurrence (cosine) over the most popular unseen movies',
    each user's last movie (by time) held out."""
    frame = table.to_pandas().sort_values(["user_id", "timestamp", "movie_id"])
    last = frame.groupby("user_id").tail(1)
    train = frame.drop(last.index)
    users, user_index = np.unique(frame["user_id"], return_inverse=True)
    movies, movie_index = np.unique(frame["movie_id"], return_inverse=True)
    x = np.zeros((len(users), len(movies)), dtype=np.float32)
    pos = frame.index.get_indexer(train.index)
    x[user_index[pos], movie_index[pos]] = 1.0
    co = x.T @ x
    np.fill_diagonal(co, 0.0)
    co /= np.sqrt(np.outer(x.sum(0), x.sum(0))) + 1e-9
    held = frame.index.get_indexer(last.index)
    rows, truth = user_index[held], movie_index[held]
    hits = []
    for scores in (x[rows] @ co, np.broadcast_to(x.sum(0), (len(rows), len(movies)))):
        top = np.argsort(-(scores - 1e9 * x[rows]), axis=1)[:, :10]
        hits.append((top == truth[:, None]).any(axis=1).mean())
    return float(hits[0] / max(hits[1], 1e-9))


if __name__ == "__main__":
    main()
