"""Fold-in online: the same model served as stable (precomputed lists) and as canary (folded in
from each user's events since the training cutoff), half the users each, through the traffic
simulator; each arm's CTR over the same period.

    .venv/bin/python evaluation/sim_foldin.py [--requests 4000] [--rate 40]

The model is ml-100k's from `bench_scale.py` (.cache/bench-scale/ml-100k: run it first),
registered twice in a fresh home (.cache/sim-foldin, ml-100k's events replayed and ingested):
the same files under two versions, the second routed as a 50% canary, and
`MOVIEREC_FOLD_IN_ARMS=canary`: only the canary folds in. `movierec ingest --follow` runs beside
the service, so each click reaches the online store within about a second and a user's next
request on the canary is folded in. The simulator (`ops.simulate`) sends --requests requests at
--rate per second; then the follower stops, the release evaluator measures both arms over the
same period (`release.evaluator.evaluate_release`, nothing applied), and each arm's CTR, its
interval and the fold-in answers are printed; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from bench_serve import APP, REPO, WHERE, follower, gunicorn

from movierec.core.schema import METADATA
from movierec.core.settings import Settings
from movierec.data.ingest import ingest
from movierec.data.movielens import fetch
from movierec.data.replay import replay
from movierec.ops.simulate import Traffic, simulate
from movierec.registry.bundles import bundle_path, new_version, save_bundle
from movierec.registry.routing import read_routing, set_canary, set_stable
from movierec.release.evaluator import evaluate_release

HOME = REPO / ".cache" / "sim-foldin"
SOURCE = REPO / ".cache" / "bench-scale" / "ml-100k"


def prepare() -> tuple[Settings, str, str]:
    """A fresh home with ml-100k's events and the same model as stable and as canary."""
    shutil.rmtree(HOME, ignore_errors=True)
    HOME.mkdir(parents=True)
    s = Settings.from_env({}, home=HOME, cache_dir=REPO / ".cache", dataset="ml-100k")
    fetch(s, "ml-100k")
    replay(s, "ml-100k", s.data.event_source)
    ingest(s)
    src = Settings.from_env({}, home=SOURCE, cache_dir=REPO / ".cache", dataset="ml-100k")
    routing = read_routing(src)
    if routing is None:
        raise RuntimeError(f"no model in {SOURCE}: run evaluation/bench_scale.py first")
    folder = bundle_path(src, routing.stable)
    meta = json.loads((folder / METADATA).read_text())
    files: dict[str, bytes | Path] = {name: folder / name for name in meta["artifacts"]}
    keep = {k: v for k, v in meta.items() if k not in ("artifacts", "version")}
    now = datetime.now(UTC)
    stable, canary = new_version(now), new_version(now + timedelta(seconds=1))
    for version in (stable, canary):
        save_bundle(s, version, files, keep)
    set_stable(s, stable, "fold-in study: precomputed")
    set_canary(s, canary, 50, "fold-in study: the same model, folded in")
    return s, stable, canary


def fold_in_answers(url: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in requests.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith("movierec_live_answers_total{"):
            labels = dict(
                p.split("=") for p in line[line.index("{") + 1 : line.index("}")].split(",")
            )
            key = f"{labels['arm'].strip(chr(34))}/{labels['path'].strip(chr(34))}"
            out[key] = out.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return {k: v for k, v in out.items() if v}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rate", type=float, default=40.0)
    args = parser.parse_args()
    # Home: the same model twice, routed 50/50
    s, stable, canary = prepare()
    WHERE.update(home=HOME, dataset="ml-100k")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOVIEREC_")}
    env |= {
        "MOVIEREC_HOME": str(HOME),
        "MOVIEREC_DATASET": "ml-100k",
        "MOVIEREC_CACHE_DIR": str(REPO / ".cache"),
        "MOVIEREC_HOST": "127.0.0.1",
        "MOVIEREC_FOLD_IN_ARMS": "canary",
        "OPENBLAS_NUM_THREADS": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(HOME / "prometheus-multiproc"),
    }
    # Traffic: the simulator against the service, the follower feeding the store
    with gunicorn(APP, env, REPO) as (url, _), follower(env):
        sim = simulate(s, Traffic(url, args.requests, rate=args.rate, seed=15))
        answers = fold_in_answers(url)
    print(f"simulated {args.requests} requests in {sim.seconds:.0f} s; answers {answers}")
    # Measure: both arms over the same period, nothing applied
    result = evaluate_release(s, apply=False, refresh=True)
    out = {"stable": stable, "canary": canary, "answers": answers, "arms": {}}
    for arm, m in result.arms.items():
        print(
            f"{arm:7} {m.model_version}: {m.requests} requests, {m.mature_requests} mature, "
            f"{m.clicks} clicks, CTR {m.ctr} [{m.ctr_low}, {m.ctr_high}]"
        )
        out["arms"][arm] = {
            k: getattr(m, k)
            for k in ("requests", "mature_requests", "clicks", "ctr", "ctr_low", "ctr_high")
        }
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
