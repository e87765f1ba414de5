"""The cycle's cost growth (issue 26): replay, ingest and training, each a real `movierec`
command in its own process, timed, with the peak memory of its whole process tree (Dask
workers included), from MovieLens to synthetic sites of millions of interactions.

    .venv/bin/python evaluation/bench_cycle.py                    # ml-100k, ml-1m, 1M
    .venv/bin/python evaluation/bench_cycle.py --sizes 1M,5M --engines in-process,dask-1,dask-2

Sizes: `ml-100k` and `ml-1m` (the real data, replayed as the site's log), or a number of
interactions (`1M`, `5M`, `20M`) for a synthetic site (`movierec replay --synthetic`) of
interactions / `--per-user` users and 27,000 movies. Up to `--text-max` interactions the log is
written as text and ingested by the DataPipeline (the ingest figure); past it the events go
straight into the lake (`--lake`, the documented shortcut for training benchmarks: the text of
20 M interactions is about a billion watch-minute lines). Each size is prepared once under
`.cache/bench-cycle/<size>`; training (`movierec train --no-tune`) runs once per engine:
`in-process` (no cluster), `dask-1` and `dask-2` (a LocalCluster of 1 or 2 workers, used
whatever the size).

Memory: the machine's available memory is sampled with each process tree's; a command is
stopped (and its row says so) when less than `--reserve-gb` would be left, so the benchmark
ends cleanly instead of the kernel killing something. Never run in CI. The last line is every
row as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / ".cache" / "bench-cycle"
MOVIELENS = {"ml-100k": 100_000, "ml-1m": 1_000_209}  # ratings (the interactions they replay)
MOVIES = 27_000
ENGINES = {
    "in-process": {"MOVIEREC_DASK_FROM_ROWS": str(10**12)},
    "dask-1": {"MOVIEREC_DASK_FROM_ROWS": "0", "MOVIEREC_DASK_WORKERS": "1"},
    "dask-2": {"MOVIEREC_DASK_FROM_ROWS": "0", "MOVIEREC_DASK_WORKERS": "2"},
}
SAMPLE_SECONDS = 0.2


@dataclass
class Row:
    size: str
    interactions: int
    stage: str
    engine: str
    seconds: float
    peak_tree_mb: float  # the most the command's processes held at once
    peak_process_mb: float  # the most one of them held
    stopped: str  # why the command did not finish ("" when it did)
    detail: str  # what the command said (lines ingested, the model's version ...)

    @property
    def us_per_interaction(self) -> float:
        return 1e6 * self.seconds / max(self.interactions, 1)


def _tree_rss(proc: psutil.Process) -> tuple[float, float]:
    """The total and the largest resident memory (MB) of a process and its descendants."""
    sizes = []
    for p in [proc, *proc.children(recursive=True)]:
        try:
            sizes.append(p.memory_info().rss / 2**20)
        except psutil.Error:
            continue
    return sum(sizes), max(sizes, default=0.0)


def _stop_tree(proc: psutil.Process) -> None:
    for p in [*proc.children(recursive=True), proc]:
        try:
            p.kill()
        except psutil.Error:
            continue


def run(cmd: list[str], env: dict[str, str], reserve_gb: float, timeout: float) -> tuple:
    """(seconds, peak tree MB, peak process MB, why stopped, stdout) of one command."""
    start = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, text=True)
    proc = psutil.Process(child.pid)
    peak_tree = peak_one = 0.0
    stopped = ""
    while child.poll() is None:
        tree, one = _tree_rss(proc)
        peak_tree, peak_one = max(peak_tree, tree), max(peak_one, one)
        if psutil.virtual_memory().available < reserve_gb * 2**30:
            stopped = f"memory: less than {reserve_gb} GB left"
        elif time.perf_counter() - start > timeout:
            stopped = f"time: over {timeout:.0f} s"
        if stopped:
            _stop_tree(proc)
            break
        time.sleep(SAMPLE_SECONDS)
    out = child.communicate()[0] or ""
    if child.returncode and not stopped:
        stopped = f"exit {child.returncode}"
    return time.perf_counter() - start, peak_tree, peak_one, stopped, out


def _interactions(size: str) -> int:
    if size in MOVIELENS:
        return MOVIELENS[size]
    units = {"K": 10**3, "M": 10**6}
    return int(float(size[:-1]) * units[size[-1].upper()]) if size[-1] in "kKmM" else int(size)


def _env(home: Path, dataset: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ, MOVIEREC_HOME=str(home), MOVIEREC_DATASET=dataset)
    env["MOVIEREC_CACHE_DIR"] = str(REPO / ".cache")  # MovieLens fetched once for every size
    env["PYTHONPATH"] = str(REPO / "src")
    return env | (extra or {})


def _movierec(*args: str) -> list[str]:
    return [sys.executable, "-m", "movierec.cli", *args, "--json"]


def prepare(size: str, args: argparse.Namespace) -> list[Row]:
    """Replay (and ingest) one size into its home, once; the rows of what was timed."""
    n = _interactions(size)
    home = ROOT / size
    if (home / ".prepared").exists():
        return []
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    rows: list[Row] = []

    def timed(stage: str, cmd: list[str], env: dict[str, str]) -> bool:
        seconds, tree, one, stopped, out = run(cmd, env, args.reserve_gb, args.timeout)
        rows.append(Row(size, n, stage, "-", seconds, tree, one, stopped, _said(out)))
        print(_line(rows[-1]), flush=True)
        return not stopped

    if size in MOVIELENS:
        env = _env(home, size)
        subprocess.run(_movierec("data", "fetch", "--dataset", size), env=env, check=True)
        ok = timed("replay", _movierec("replay", "--dataset", size), env)
        ok = ok and timed("ingest", _movierec("ingest"), env)
    else:
        env = _env(home, "synthetic")
        users = max(n // args.per_user, 100)
        synthetic = ["--synthetic", "--users", str(users), "--movies", str(MOVIES)]
        synthetic += ["--interactions", str(n)]
        if n > args.text_max:
            ok = timed("replay --lake", _movierec("replay", *synthetic, "--lake"), env)
        else:
            ok = timed("replay", _movierec("replay", *synthetic), env)
            ok = ok and timed("ingest", _movierec("ingest"), env)
    if ok:
        (home / ".prepared").write_text("ok")
    return rows


def train(size: str, engine: str, args: argparse.Namespace) -> Row:
    n = _interactions(size)
    dataset = size if size in MOVIELENS else "synthetic"
    env = _env(ROOT / size, dataset, ENGINES[engine])
    seconds, tree, one, stopped, out = run(
        _movierec("train", "--no-tune"), env, args.reserve_gb, args.timeout
    )
    row = Row(size, n, "train --no-tune", engine, seconds, tree, one, stopped, _said(out))
    print(_line(row), flush=True)
    return row


def _said(out: str) -> str:
    """The command's JSON summary, shortened to what a table can hold."""
    try:
        summary = json.loads(out)
    except ValueError:
        return ""
    if not isinstance(summary, dict):
        return ""
    keep = ("version", "lines", "accepted", "events", "ratings", "interactions", "seconds")
    return ", ".join(f"{k}={summary[k]}" for k in keep if k in summary)


def _line(row: Row) -> str:
    return (
        f"{row.size:>8} {row.stage:<16} {row.engine:<10} {row.seconds:9.1f} s "
        f"{row.us_per_interaction:8.2f} us/int  tree {row.peak_tree_mb:7.0f} MB  "
        f"one {row.peak_process_mb:7.0f} MB  {row.stopped or 'ok'}  {row.detail}"
    )


def summary(rows: list[Row]) -> None:
    """Growth of time per interaction from the smallest to the largest synthetic size, and
    Dask with 2 workers against 1, per stage."""
    by = {(r.size, r.stage, r.engine): r for r in rows if not r.stopped}
    synthetic = sorted({r.size for r in rows if r.size not in MOVIELENS}, key=_interactions)
    for stage, engine in sorted({(r.stage, r.engine) for r in rows}):
        done = [by[(s, stage, engine)] for s in synthetic if (s, stage, engine) in by]
        if len(done) >= 2:
            growth = done[-1].us_per_interaction / done[0].us_per_interaction
            print(
                f"growth of time per interaction, {stage} {engine}, "
                f"{done[0].size} -> {done[-1].size}: {growth:.2f}x"
            )
    for size in sorted({r.size for r in rows}, key=_interactions):
        one, two = (
            by.get((size, "train --no-tune", "dask-1")),
            by.get((size, "train --no-tune", "dask-2")),
        )
        if one and two:
            print(f"{size}: training on 2 Dask workers / 1: {two.seconds / one.seconds:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="ml-100k,ml-1m,1M")
    parser.add_argument("--engines", default="in-process")
    parser.add_argument("--per-user", type=int, default=20, help="interactions per user")
    parser.add_argument("--text-max", type=int, default=2_000_000)
    parser.add_argument("--reserve-gb", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=3600.0, help="per command, seconds")
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.1f} GB; "
        f"load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    rows: list[Row] = []
    for size in args.sizes.split(","):
        rows += prepare(size, args)
        if not (ROOT / size / ".prepared").exists():
            continue  # its replay or ingest was stopped: nothing to train on
        rows += [train(size, engine, args) for engine in args.engines.split(",")]
    summary(rows)
    print(json.dumps([asdict(r) | {"us_per_interaction": r.us_per_interaction} for r in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
