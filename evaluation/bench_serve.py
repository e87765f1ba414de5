"""Serving benchmark: `/recommend` of a model trained on ml-1m against a minimal Flask endpoint.

    .venv/bin/python evaluation/bench_serve.py [--seconds 15] [--connections 32] [--rounds 3]
                                               [--events 30] [--arrivals 20]
    .venv/bin/python evaluation/bench_serve.py --seconds 3 --rounds 1 --events 5   # quick check
    .venv/bin/python evaluation/bench_serve.py --home .cache/bench-scale/ml-100k --dataset ml-100k

Every configuration runs under the same gunicorn settings (`src/movierec/serve/gunicorn_conf.py`:
gthread, MOVIEREC_WORKERS workers x MOVIEREC_THREADS threads) on loopback, loaded by wrk
(Debian's package) with --connections connections for --seconds seconds after a short warm-up:

- the minimal Flask endpoint (`evaluation/minimal_app.py`, a fixed string): the baseline;
- the precomputed path: every ml-1m user and 200 unknown ones (cold start); each request finds
  no event since the training cutoff (in the worker's index of the online store's change feed,
  `serve.live.feed_index`) and answers the precomputed list; it is logged to the served log and the
  prediction register;
- the fold-in path: users with 50 movies in their history, 40 in the model's training data and
  10 new since its cutoff (watch events appended to the event source and ingested by the
  DataPipeline into the online store before the run), so each answer is folded in from the
  whole history and re-ranked by the bundle's XGBoost ranker. Measured four ways:
  - on the request: the per-worker cache and the warmer off (`fold_in_cache_users=0`,
    `fold_in_warm_users=0`): every request recomputes, the worst case;
  - cache, no warming: the per-worker cache alone (a user's next requests are a lookup until
    they watch something new);
  - warmed: the service's defaults; each worker's warmer (`serve.live.warmer`) folds users in when
    the change feed shows their events, here at its first read (the events were ingested
    before the start), during the warm-up;
  - events arriving: the defaults with `movierec ingest --follow` beside the service and --arrivals
  watches a second appended to the event source during the load, each a random fold-in user's watch
  of a popular movie new to them (never one they watched: that would leave the list as it was). Each
  retires that user's list until the worker's warmer has folded the event in (a request meanwhile
  gets the previous list without the movie): the real path. The workers share their lists
  (`serve.live.shared_lists`): a user folded in by one is taken by the other. These events stay in
  the store for the later configurations;
  - arriving, process: the same, with `movierec fold-in` (`serve.live.fold_in_process`) beside the
  service, as in the compose stack: the workers take its lists instead of folding in themselves;
- the minimal endpoint again with the same work beside it (the follower, `movierec fold-in`
  and the arrivals, on the benchmark's store): on these 2 cores that work takes CPU from
  whatever serves, so the fold-in path is also compared with a minimal endpoint under the same
  load (the headline fold-in figure), besides the quiet one;
- the precomputed path with the per-client rate limit on (never reached): its bookkeeping.

They run in turn, --rounds times; each figure is the median over the rounds. Memory: after each
load, every worker's PSS and USS from /proc/<pid>/smaps_rollup (PSS divides a shared page
among the processes mapping it, so the bundle's memory-mapped arrays are not counted once per
worker; USS counts only the pages the worker alone has) and its RSS.

Freshness: `movierec ingest --follow` runs beside the service; --events times, a known user
watches the first movie of their current answer (one line appended to the event source) and
/recommend is polled every 10 ms until the answer changes. p50 and p99 of that delay (after
one event not counted: the follower's first batch after its start, printed apart).

Each configuration starts with no shared fold-in lists. After each load, the workers' fold-in
events (`movierec_fold_in_warm_total`) are printed with the run.

Targets (issue 15): precomputed throughput >= 0.85x the minimal endpoint's and p99 <= 1.15x;
fold-in p99 <= 1.5x the minimal endpoint's (the service as deployed, with events arriving and
the fold-in process, against the minimal endpoint with the same work beside it; every fold-in
variant is also printed against the quiet minimal endpoint); worker PSS <= 150 MB; freshness
p50 and p99 <= 2 s.
Ratios are measured in the same run; the last line is the summary as JSON.

The ml-1m model is trained once (without tuning: serving cost does not depend on it) into
.cache/bench-serve and reused by later runs; the online store there is emptied at each run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import requests

from movierec.core.settings import Settings
from movierec.data.events import format_watch
from movierec.ops.service import free_port, poll_ready

REPO = Path(__file__).resolve().parents[1]
HOME = REPO / ".cache" / "bench-serve"
WHERE = {"home": HOME, "dataset": "ml-1m"}  # --home and --dataset: another trained model
CONF = REPO / "src" / "movierec" / "serve" / "gunicorn_conf.py"
APP = "movierec.serve:create_app()"
TRAINED, NEW = 40, 10  # the fold-in users' history: in the training data, since the cutoff
ON_REQUEST, CACHE_ONLY = "fold-in on the request", "fold-in, cache, no warming"
WARMED, ARRIVING = "fold-in, warmed", "fold-in, events arriving"
PROCESS = "fold-in, arriving, process"  # with `movierec fold-in` beside the service
MINIMAL, MINIMAL_BUSY = "minimal Flask endpoint", "minimal, events arriving"

LUA = """
ids = {IDS}
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/recommend/" .. ids[(counter * 7919) % #ids + 1])
end
"""


def bench_settings() -> Settings:
    home, dataset = Path(WHERE["home"]), str(WHERE["dataset"])
    return Settings.from_env({}, home=home, cache_dir=REPO / ".cache", dataset=dataset)


def prepare_model() -> str:
    """A stable model trained on all of ml-1m (cached); returns its version."""
    from movierec.data.ingest import ingest
    from movierec.data.movielens import fetch
    from movierec.data.replay import replay
    from movierec.registry.routing import read_routing, set_stable
    from movierec.retrain.training import train_candidate

    s = bench_settings()
    routing = read_routing(s)
    if routing is not None:
        return routing.stable
    s.home.mkdir(parents=True, exist_ok=True)
    fetch(s, s.data.dataset)
    t0 = time.perf_counter()
    replay(s, s.data.dataset, s.data.event_source)
    ingest(s)
    result = train_candidate(s, tune=False)
    set_stable(s, result.version, "serving benchmark")
    print(
        f"trained {result.version} on {s.data.dataset} in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    return result.version


# ---- servers and measurements (bench_scale.py uses these too) -------------------------------
@contextmanager
def gunicorn(app: str, env: dict[str, str], cwd: Path) -> Iterator[tuple[str, int]]:
    """gunicorn with the service's config file serving `app`; yields (url, master pid)."""
    port = free_port()
    env = dict(env, MOVIEREC_PORT=str(port))
    binary = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
    proc = subprocess.Popen(
        [binary, "-c", str(CONF), app],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        ok, _, _ = poll_ready(url, timeout=300, proc=proc)
        if not ok:
            raise RuntimeError(f"{app} at {url} not ready in 300 s")
        yield url, proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def workers(master: int) -> list[int]:
    """The pids of the gunicorn master's children."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == master:
                out.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return sorted(out)


def memory_mb(pid: int) -> dict[str, float]:
    """A process's PSS, USS (private pages) and RSS in MB, from /proc/<pid>/smaps_rollup."""
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    kb = {k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+) kB", text, re.M)}
    uss = kb["Private_Clean"] + kb["Private_Dirty"]
    return {"pss": kb["Pss"] / 1024, "uss": uss / 1024, "rss": kb["Rss"] / 1024}


def worker_memory(master: int) -> list[dict[str, float]]:
    return [{k: round(v, 1) for k, v in memory_mb(pid).items()} for pid in workers(master)]


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url: str, seconds: float, connections: int, ids: Sequence[int]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA.replace("IDS", ",".join(str(i) for i in ids)))
        script = f.name
    try:
        cmd = [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            script,
            url,
        ]
        text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script)
    latency = {
        q: float(v) * UNITS[u]
        for q, v, u in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    }
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    if rps is None or total is None or "50" not in latency:
        raise RuntimeError(f"could not read wrk's output:\n{text}")
    return {
        "requests": int(total.group(1)),
        "rps": float(rps.group(1)),
        "p50_ms": latency["50"],
        "p99_ms": latency["99"],
        "failed": (int(non2xx.group(1)) if non2xx else 0)
        + (sum(int(x) for x in errors.groups()) if errors else 0),
    }


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between ranks."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


# ---- the fold-in users ----------------------------------------------------------------------
def fold_in_users(version: str, count: int) -> tuple[dict[int, list[str]], NewWatches]:
    """Up to `count` users with TRAINED movies in the model's data (the closest counts if too
    few have exactly that many), and NEW movies each that they never watched (popular ones,
    drawn with a fixed seed); and the watches that arrive during the loads."""
    from movierec.model.recommender import RankByRating, TwoStageModel, load_recommender
    from movierec.registry.bundles import bundle_path

    model = load_recommender(bundle_path(bench_settings(), version), mmap=True)
    two_stage = model.model if isinstance(model, RankByRating) else model
    assert isinstance(two_stage, TwoStageModel)
    stage = two_stage.stage
    seen, index = stage.seen, stage.index
    counts = [int(n) for n in (seen.indptr[1:] - seen.indptr[:-1]).tolist()]
    rows = sorted(range(len(counts)), key=lambda r: (abs(counts[r] - TRAINED), r))[:count]
    log_pop = stage.base.item_stats[:, stage.base.ITEM_COLS.index("i_log_pop")]
    popular = [int(i) for i in (-log_pop).argsort()[:500]]
    rng = random.Random(15)
    new: dict[int, list[str]] = {}
    history: dict[int, set[str]] = {}
    for row in rows:
        watched = set(seen.indices[seen.indptr[row] : seen.indptr[row + 1]].tolist())
        fresh = [i for i in popular if i not in watched]
        user = int(index.users[row])
        new[user] = [str(index.movies[i]) for i in rng.sample(fresh, NEW)]
        history[user] = {str(index.movies[i]) for i in watched} | set(new[user])
    spread = sorted({counts[r] for r in rows})
    print(
        f"fold-in users: {len(rows)}, trained history {spread[0]}..{spread[-1]} movies, "
        f"+{NEW} new each",
        flush=True,
    )
    return new, NewWatches(history, [str(index.movies[i]) for i in popular])


class NewWatches:
    """The watches that arrive during the loads: each a random fold-in user's watch of one of
    the 500 most popular movies that they have not watched yet (in the training data, the
    events written before the loads, or an earlier arrival of this run). Every arrival then
    changes its user's history, so the user's list must be made again. Watching a movie twice
    would leave the list as it was, and a cache would answer it."""

    def __init__(self, history: dict[int, set[str]], popular: list[str], seed: int = 16):
        self.history, self.popular = history, popular
        self.users = sorted(history)
        self.rng = random.Random(seed)

    def next(self) -> tuple[int, str]:
        while True:
            user, movie = self.rng.choice(self.users), self.rng.choice(self.popular)
            if movie not in self.history[user]:
                self.history[user].add(movie)
                return user, movie


def write_new_events(new: dict[int, list[str]]) -> float:
    """Empty the online store, append the users' new watches (after the training cutoff) to the
    event source and ingest them (the DataPipeline writes the store); returns the seconds."""
    from movierec.data.ingest import ingest

    s = bench_settings()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{s.online_store_file}{suffix}").unlink(missing_ok=True)
    start = datetime.now(UTC) - timedelta(days=1)  # after the cutoff, not in the future
    with open(s.path(s.data.event_source), "a") as f:
        for n, (user, movies) in enumerate(new.items()):
            for j, movie in enumerate(movies):
                at = start + timedelta(seconds=n, minutes=j)
                f.writelines(
                    format_watch(at + timedelta(minutes=m), user, movie, m) + "\n" for m in range(3)
                )
    t0 = time.perf_counter()
    ingest(s)
    return time.perf_counter() - t0


# ---- freshness ------------------------------------------------------------------------------
@contextmanager
def follower(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """`movierec ingest --follow` on the benchmark's home, caught up before it yields."""
    from movierec.data.lake import LakeState
    from movierec.data.positions import FilePosition

    s = bench_settings()
    source = s.path(s.data.event_source)
    log = open(s.home / "follow.log", "ab")  # noqa: SIM115 - the child holds it
    proc = subprocess.Popen(
        [sys.executable, "-m", "movierec.cli", "ingest", "--follow"],
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    key = str(source.resolve())
    try:
        deadline = time.monotonic() + 120
        while LakeState.load(s).positions.get(key) != FilePosition(
            source.stat().st_size, source.stat().st_ino
        ):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ingest --follow did not catch up: see {s.home / 'follow.log'}")
            time.sleep(0.05)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()


def cpu_seconds(pid: int) -> float:
    """A process's user and system CPU time so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle(pid: int, timeout: float = 60.0) -> float:
    """Wait until the process uses under 5% of a core over a second; returns the seconds."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        before = cpu_seconds(pid)
        time.sleep(1.0)
        if cpu_seconds(pid) - before < 0.05:
            break
    return time.perf_counter() - t0


@dataclass
class Beside:
    """What runs beside the service during a load: the events appended, the processes."""

    events: int = 0
    pids: list[int] = field(default_factory=list)

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)


@contextmanager
def arrivals(env: dict[str, str], watches: NewWatches, rate: float) -> Iterator[Beside]:
    """The follower, and `rate` watches a second appended to the event source by a thread
    (`watches`: each a new movie for its user); yields the events appended and the follower.

    The follower's start-up work (about a core for 5 s after it has caught up, measured) is
    waited out before the load, as the warmers' is. Its rebuilds of the lake's tables (every
    60 s by default: 10 s and more of one core over ml-1m's million events, the offline
    tables' cost, not serving's) are put off past the run: on these 2 cores one would take a
    core from the service mid-load. Its batches, the online store's writes and the change feed
    run as in production."""
    s = bench_settings()
    source = s.path(s.data.event_source)
    count = Beside()
    stop = threading.Event()

    def append() -> None:
        while not stop.wait(1.0 / rate):
            user, movie = watches.next()
            line = format_watch(datetime.now(UTC), user, movie, 0)
            with open(source, "a") as f:
                f.write(line + "\n")
            count.events += 1

    with follower(env | {"MOVIEREC_INGEST_REFRESH_SECONDS": "86400"}) as proc:
        idle(proc.pid)
        count.pids.append(proc.pid)
        thread = threading.Thread(target=append, name="arrivals", daemon=True)
        thread.start()
        try:
            yield count
        finally:
            stop.set()
            thread.join()


@contextmanager
def arrivals_and_process(env: dict[str, str], watches: NewWatches, rate: float) -> Iterator[Beside]:
    """`movierec fold-in` beside the service (its start-up work waited out), then `arrivals`;
    yields the events appended, the follower and the process. Its summary is printed at the
    end."""
    from movierec.serve.live.shared_lists import open_shared_lists

    s = bench_settings()
    log_path = s.home / "fold-in.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "movierec.cli", "fold-in", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )
    lists = open_shared_lists(s)
    assert lists is not None
    try:
        deadline = time.monotonic() + 120
        while lists.folder_seen_ms() is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"movierec fold-in did not start: see {log_path}")
            time.sleep(0.1)
        idle(proc.pid)
        with arrivals(env, watches, rate) as count:
            count.pids.append(proc.pid)
            yield count
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        lists.close()
    print(f"  movierec fold-in: {out.decode().strip()}", flush=True)


def freshness(url: str, env: dict[str, str], users: Sequence[int], events: int) -> list[float]:
    """Seconds from a watch appended to the event source to a changed answer, per event."""
    s = bench_settings()
    source = s.path(s.data.event_source)
    delays = []
    with follower(env):
        for user in users[: events + 1]:  # the first, the follower's first batch: not counted
            before = requests.get(f"{url}/recommend/{user}", timeout=10).text
            line = format_watch(datetime.now(UTC), user, before.split(",")[0], 0) + "\n"
            with open(source, "a") as f:
                f.write(line)
            t0 = time.perf_counter()
            while requests.get(f"{url}/recommend/{user}", timeout=10).text == before:
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError(f"user {user}'s answer unchanged 30 s after a watch")
                time.sleep(0.01)
            delays.append(time.perf_counter() - t0)
    print(f"freshness: the follower's first event took {delays[0]:.3f} s (not counted)")
    return delays[1:]


# ---- the run --------------------------------------------------------------------------------
def measure(
    name: str,
    run: tuple[str, dict[str, str], Path, list[int]],
    args: argparse.Namespace,
    beside: Callable[[], AbstractContextManager[Beside]] | None = None,
) -> dict[str, Any]:
    """One load of one configuration; `beside`: what runs next to the service meanwhile."""
    app, env, cwd, ids = run
    for suffix in ("", "-wal", "-shm"):  # no shared fold-in lists from the run before
        (bench_settings().data_path / f"fold_in_lists.sqlite{suffix}").unlink(missing_ok=True)
    with gunicorn(app, env, cwd) as (url, master):
        settled = warmers_settled(url)
        events = warm_events(url)
        with beside() if beside else nullcontext() as n:
            wrk(url, 2, args.connections, ids)  # warm-up
            before = n.events if n else 0
            pids = workers(master)
            worker_cpu, beside_cpu = sum(map(cpu_seconds, pids)), n.cpu() if n else 0.0
            t0 = time.perf_counter()
            result = wrk(url, args.seconds, args.connections, ids)
            took = time.perf_counter() - t0
            used = sum(map(cpu_seconds, pids)) - worker_cpu
            result["worker_cores"] = round(used / took, 2)  # CPU during the load, in cores
            if n:
                result["events_during_load"] = n.events - before
                result["beside_cores"] = round((n.cpu() - beside_cpu) / took, 2)
        result["workers"] = worker_memory(master)
        result["master_pss_mb"] = round(memory_mb(master)["pss"], 1)
        result["warm_start"] = settled
        after = warm_events(url)  # since the warmers settled: during the load, mostly
        result["fold_in_events"] = {e: after[e] - events.get(e, 0.0) for e in after if after[e]}
    print(f"{name}: {json.dumps(result)}", flush=True)
    return result


def warm_events(url: str) -> dict[str, float]:
    """The workers' `movierec_fold_in_warm_total` by event and `movierec_live_answers_total`
    by path (summed over the arms), from the service's /metrics."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    out: dict[str, float] = {}
    warm = re.compile(r'^movierec_fold_in_warm_total\{event="(\w+)"\} ([\d.e+]+)$', re.M)
    for event, n in warm.findall(text):
        out[event] = float(n)
    paths = re.compile(r'^movierec_live_answers_total\{[^}]*path="(\w+)"[^}]*\} ([\d.e+]+)$', re.M)
    for path, n in paths.findall(text):
        out[f"path_{path}"] = out.get(f"path_{path}", 0.0) + float(n)
    return out


def warmers_settled(url: str, timeout: float = 60.0) -> dict[str, float]:
    """Wait for the workers' warmers to fold in (or take from another) the lists of the users
    active last (`serve.live.warmer`: a worker's start-up work, done before it is loaded); returns
    the lists made and the seconds from ready. Settled: no list made for a second."""
    t0 = time.perf_counter()
    last, since = -1.0, t0
    while time.perf_counter() - t0 < timeout:
        events = warm_events(url)
        made = events.get("computed", 0.0) + events.get("shared", 0.0)
        if made != last:
            last, since = made, time.perf_counter()
        elif time.perf_counter() - since >= 1.0:
            break
        time.sleep(0.1)
    return {"lists": last, "seconds": round(since - t0, 2)}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the rounds; memory: the largest worker of each round."""
    out: dict[str, Any] = {}
    for key in ("rps", "p50_ms", "p99_ms"):
        out[key] = statistics.median(r[key] for r in runs)
    out["failed"] = sum(r["failed"] for r in runs)
    if "events_during_load" in runs[0]:
        out["events_during_load"] = statistics.median(r["events_during_load"] for r in runs)
    for key in ("pss", "uss", "rss"):
        out[f"max_{key}_mb"] = statistics.median(max(w[key] for w in r["workers"]) for r in runs)
    out["master_pss_mb"] = statistics.median(r["master_pss_mb"] for r in runs)
    return out


def known_users(version: str) -> list[int]:
    from movierec.registry.bundles import bundle_path

    path = bundle_path(bench_settings(), version) / "lists.users.npy"
    return [int(u) for u in np.load(path, mmap_mode="r")]


def configs(
    version: str, fold_users: list[int]
) -> dict[str, tuple[str, dict[str, str], Path, list[int]]]:
    s = bench_settings()
    base = {k: v for k, v in os.environ.items() if not k.startswith("MOVIEREC_")}
    base |= {"MOVIEREC_HOST": "127.0.0.1", "OPENBLAS_NUM_THREADS": "1"}
    for key in ("MOVIEREC_WORKERS", "MOVIEREC_THREADS"):
        if key in os.environ:
            base[key] = os.environ[key]
    ours = base | {
        "MOVIEREC_HOME": str(s.home),
        "MOVIEREC_DATASET": s.data.dataset,
        "MOVIEREC_CACHE_DIR": str(REPO / ".cache"),
        "PROMETHEUS_MULTIPROC_DIR": str(s.home / "prometheus-multiproc"),
    }
    minimal = base | {"MOVIEREC_HOME": tempfile.mkdtemp(prefix="bench-minimal-")}
    folded = set(fold_users)
    known = [u for u in known_users(version) if u not in folded]
    unknown = list(range(max(known) + 1001, max(known) + 1201))  # 200 unknown: cold start
    precomputed = known + unknown
    no_warm = {"MOVIEREC_FOLD_IN_WARM_USERS": "0"}
    no_cache = no_warm | {"MOVIEREC_FOLD_IN_CACHE_USERS": "0"}
    limit = {"MOVIEREC_RATE_LIMIT_PER_MINUTE": "10000000"}  # bookkeeping, never reached
    return {
        MINIMAL: ("minimal_app:app", minimal, REPO / "evaluation", known),
        "precomputed": (APP, ours, REPO, precomputed),
        ON_REQUEST: (APP, ours | no_cache, REPO, fold_users),
        CACHE_ONLY: (APP, ours | no_warm, REPO, fold_users),
        WARMED: (APP, ours, REPO, fold_users),
        ARRIVING: (APP, ours, REPO, fold_users),
        PROCESS: (APP, ours, REPO, fold_users),
        MINIMAL_BUSY: ("minimal_app:app", minimal, REPO / "evaluation", known),
        "precomputed, rate limit": (APP, ours | limit, REPO, precomputed),
    }


def report(
    medians: dict[str, dict[str, Any]], delays: list[float], args: argparse.Namespace
) -> dict[str, Any]:
    print(f"\nmedian of {args.rounds} rounds")
    head = f"{'':26}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}"
    print(head + f"{'PSS MB':>9}{'USS MB':>9}{'RSS MB':>9}  (largest worker){'master PSS':>12}")
    for name, r in medians.items():
        print(
            f"{name:26}{r['rps']:>9.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['failed']:>8}"
            f"{r['max_pss_mb']:>9.1f}{r['max_uss_mb']:>9.1f}{r['max_rss_mb']:>9.1f}"
            f"{'':18}{r['master_pss_mb']:>10.1f}"
        )
    mini, pre = medians[MINIMAL], medians["precomputed"]
    limited = medians["precomputed, rate limit"]
    pss = max(medians[n]["max_pss_mb"] for n in medians if n not in (MINIMAL, MINIMAL_BUSY))
    fresh50, fresh99 = percentile(delays, 50), percentile(delays, 99)

    def p99_ratio(name: str, base: dict[str, Any] = mini) -> tuple[float, str, float]:
        return (medians[name]["p99_ms"] / base["p99_ms"], "<=", 1.5)

    figures = {
        "precomputed_throughput_ratio": (pre["rps"] / mini["rps"], ">=", 0.85),
        "precomputed_p99_ratio": (pre["p99_ms"] / mini["p99_ms"], "<=", 1.15),
        "fold_in_p99_ratio": p99_ratio(PROCESS, medians[MINIMAL_BUSY]),
        "fold_in_arriving_process_vs_quiet_p99_ratio": p99_ratio(PROCESS),
        "fold_in_arriving_no_process_vs_quiet_p99_ratio": p99_ratio(ARRIVING),
        "fold_in_warmed_p99_ratio": p99_ratio(WARMED),
        "fold_in_cache_only_p99_ratio": p99_ratio(CACHE_ONLY),
        "fold_in_on_request_p99_ratio": p99_ratio(ON_REQUEST),
        "worker_pss_mb": (pss, "<=", 150.0),
        "freshness_p50_s": (fresh50, "<=", 2.0),
        "freshness_p99_s": (fresh99, "<=", 2.0),
    }
    print(f"\nrate limiting costs {1 - limited['rps'] / pre['rps']:.1%} of throughput")
    for name in (ARRIVING, PROCESS, MINIMAL_BUSY):
        print(f"{name}: {medians[name]['events_during_load']} events during the load (median)")
    print(
        f"freshness over {len(delays)} events: p50 {fresh50:.3f} s, p99 {fresh99:.3f} s, "
        f"max {max(delays):.3f} s"
    )
    summary: dict[str, Any] = {"configs": medians, "freshness_s": [round(d, 3) for d in delays]}
    for name, (value, op, target) in figures.items():
        ok = value >= target if op == ">=" else value <= target
        print(f"{name} {value:.2f} (target {op} {target}): {'PASS' if ok else 'FAIL'}")
        summary[name] = {"value": round(value, 3), "target": f"{op} {target}", "pass": ok}
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=30, help="freshness: events measured")
    parser.add_argument("--fold-in-users", type=int, default=300)
    parser.add_argument("--arrivals", type=float, default=20, help="watches a second, arriving")
    parser.add_argument("--home", type=Path, default=HOME, help="another trained model's home")
    parser.add_argument("--dataset", default="ml-1m", help="the data set of --home")
    args = parser.parse_args()
    WHERE.update(home=args.home.resolve(), dataset=args.dataset)
    if shutil.which("wrk") is None:
        print("wrk is missing: run scripts/system_deps.sh (Debian's wrk)", file=sys.stderr)
        return 2
    # Model, fold-in users and their new events in the online store
    version = prepare_model()
    new, watches = fold_in_users(version, args.fold_in_users)
    print(f"ingested {len(new) * NEW * 3} new watch events in {write_new_events(new):.1f} s")
    fold_users = sorted(new)
    runs = configs(version, fold_users)
    env = runs["precomputed"][1]

    def beside(name: str) -> Callable[[], AbstractContextManager[Beside]] | None:
        if name == ARRIVING:
            return lambda: arrivals(env, watches, args.arrivals)
        if name in (PROCESS, MINIMAL_BUSY):
            return lambda: arrivals_and_process(env, watches, args.arrivals)
        return None

    workers_env = runs["precomputed"][1]
    print(
        f"model {version}; gunicorn gthread {workers_env.get('MOVIEREC_WORKERS', '2')} workers "
        f"x {workers_env.get('MOVIEREC_THREADS', '4')} threads; wrk 2 threads, "
        f"{args.connections} connections, {args.seconds} s",
        flush=True,
    )
    # Load: every configuration in turn, --rounds times
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in runs}
    for k in range(args.rounds):
        for name, run in runs.items():
            results[name].append(measure(f"{name} (round {k + 1})", run, args, beside(name)))
    medians = {name: median_run(r) for name, r in results.items()}
    # Freshness: the follower beside the service, users outside the fold-in set
    users = random.Random(7).sample(runs[MINIMAL][3], args.events + 1)
    with gunicorn(APP, env, REPO) as (url, _):
        delays = freshness(url, env, users, args.events)
    shutil.rmtree(runs[MINIMAL][1]["MOVIEREC_HOME"], ignore_errors=True)
    summary = report(medians, delays, args)
    print(json.dumps(summary, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
