"""Serving benchmark: `/recommend` of a model trained on ml-1m against a minimal Flask endpoint.

    .venv/bin/python evaluation/bench_serve.py [--seconds 15] [--connections 32] [--rounds 3]

Both run under the same gunicorn settings (`src/movierec/serve/gunicorn_conf.py`: gthread,
MOVIEREC_WORKERS workers x MOVIEREC_THREADS threads) on loopback, one after the other, loaded
by wrk (Debian's package) with --connections connections for --seconds seconds after a short
warm-up. Our requests cycle over every ml-1m user id and some unknown ones (cold start), so
every response is a real lookup and is logged to the served log and the prediction register.
A third configuration turns the per-client rate limit on (with a limit never reached) to show
what its bookkeeping costs. The three run in turn, --rounds times (one load test can be
unlucky), and each is reported by its round with the median throughput: requests/s, p50
and p99 latency, and the resident memory of each gunicorn worker read from /proc after the
load; then the throughput ratio. Targets: throughput >= 70% of the minimal endpoint's,
p99 <= 25 ms, RSS <= 300 MB per worker.

The ml-1m model is trained once (without tuning: serving cost does not depend on it) into
.cache/bench-serve and reused by later runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from movierec.ops.service import free_port, poll_ready

REPO = Path(__file__).resolve().parents[1]
HOME = REPO / ".cache" / "bench-serve"
CONF = REPO / "src" / "movierec" / "serve" / "gunicorn_conf.py"
USERS = 6040

LUA = """
counter = 0
request = function()
  counter = counter + 1
  local id = (counter * 7919) % SPAN + 1
  return wrk.format("GET", "/recommend/" .. id)
end
"""


def prepare_model() -> str:
    """A stable model trained on all of ml-1m (cached); returns its version."""
    from movierec.core.settings import Settings
    from movierec.data.ingest import ingest
    from movierec.data.movielens import fetch
    from movierec.data.replay import replay
    from movierec.registry.routing import read_routing, set_stable
    from movierec.retrain.training import train_candidate

    s = Settings.from_env({}, home=HOME, cache_dir=REPO / ".cache", dataset="ml-1m")
    routing = read_routing(s)
    if routing is not None:
        return routing.stable
    HOME.mkdir(parents=True, exist_ok=True)
    fetch(s, "ml-1m")
    t0 = time.perf_counter()
    replay(s, "ml-1m", s.data.event_source)
    ingest(s)
    result = train_candidate(s, tune=False)
    set_stable(s, result.version, "serving benchmark")
    print(f"trained {result.version} on ml-1m in {time.perf_counter() - t0:.0f} s", flush=True)
    return result.version


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
        wait_ready(url, proc)
        yield url, proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    ok, _, _ = poll_ready(url, timeout=120, proc=proc)
    if not ok:
        raise RuntimeError(f"{url} not ready in 120 s")


def worker_rss_mb(master: int) -> list[float]:
    """VmRSS of every child of the gunicorn master."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) != master:
                continue
            status = (stat.parent / "status").read_text()
        except (OSError, IndexError, ValueError):
            continue
        found = re.search(r"VmRSS:\s+(\d+) kB", status)
        if found:
            out.append(int(found.group(1)) / 1024)
    return sorted(out)


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url: str, seconds: int, connections: int, span: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA.replace("SPAN", str(span)))
        script = f.name
    try:
        cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script, url]
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
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
    }


def measure(
    name: str, app: str, env: dict[str, str], cwd: Path, args: argparse.Namespace, span: int
) -> dict[str, Any]:
    with gunicorn(app, env, cwd) as (url, master):
        wrk(url, 2, args.connections, span)  # warm-up
        result = wrk(url, args.seconds, args.connections, span)
        result["worker_rss_mb"] = [round(v, 1) for v in worker_rss_mb(master)]
    print(f"{name}: {json.dumps(result)}", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is missing: run scripts/system_deps.sh (Debian's wrk)", file=sys.stderr)
        return 2
    version = prepare_model()
    base = {k: v for k, v in os.environ.items() if not k.startswith("MOVIEREC_")}
    base |= {"MOVIEREC_HOST": "127.0.0.1", "OPENBLAS_NUM_THREADS": "1"}
    workers, threads = base.get("MOVIEREC_WORKERS", "2"), base.get("MOVIEREC_THREADS", "4")
    ours_env = base | {
        "MOVIEREC_HOME": str(HOME),
        "MOVIEREC_DATASET": "ml-1m",
        "PROMETHEUS_MULTIPROC_DIR": str(HOME / "prometheus-multiproc"),
    }
    print(
        f"model {version}; gunicorn gthread {workers} workers x {threads} threads; "
        f"wrk 2 threads, {args.connections} connections, {args.seconds} s",
        flush=True,
    )
    minimal_env = base | {"MOVIEREC_HOME": tempfile.mkdtemp(prefix="bench-minimal-")}
    configs = {
        "minimal Flask endpoint": ("minimal_app:app", minimal_env, REPO / "evaluation", USERS),
        # the last 200 ids are unknown: cold start
        "movierec /recommend": ("movierec.serve:create_app()", ours_env, REPO, USERS + 200),
        "movierec, rate limit on": (
            "movierec.serve:create_app()",
            ours_env | {"MOVIEREC_RATE_LIMIT_PER_MINUTE": "10000000"},  # bookkeeping, never hit
            REPO,
            USERS + 200,
        ),
    }
    # the three in turn, --rounds times; each figure is the round with the median throughput
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    for k in range(args.rounds):
        for name, (app, env, cwd, span) in configs.items():
            results[name].append(measure(f"{name} (round {k + 1})", app, env, cwd, args, span))
    minimal, ours, limited = (
        sorted(runs, key=lambda r: r["rps"])[len(runs) // 2] for runs in results.values()
    )
    ratio = ours["rps"] / minimal["rps"]
    rss = max(ours["worker_rss_mb"] or [float("nan")])
    print()
    print(f"median of {args.rounds} rounds")
    print(f"{'':24}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'failed':>8}  worker RSS MB")
    runs = (
        ("minimal Flask endpoint", minimal),
        ("movierec /recommend", ours),
        ("movierec, rate limit on", limited),
    )
    for name, r in runs:
        failed = r["non_2xx"] + r["socket_errors"]
        print(
            f"{name:24}{r['rps']:>10.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{failed:>8}  "
            f"{r['worker_rss_mb']}"
        )
    print()
    checks = (
        (f"throughput ratio {ratio:.2f}", "target >= 0.70", ratio >= 0.7),
        (f"p99 {ours['p99_ms']:.2f} ms", "target <= 25 ms", ours["p99_ms"] <= 25),
        (f"max worker RSS {rss:.0f} MB", "target <= 300 MB", rss <= 300),
    )
    print(f"rate limiting costs {1 - limited['rps'] / ours['rps']:.1%} of throughput")
    for figure, target, ok in checks:
        print(f"{figure} ({target}): {'met' if ok else 'MISSED'}")
    shutil.rmtree(minimal_env["MOVIEREC_HOME"], ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
