"""`movierec data fetch`, `movierec replay`, `movierec ingest`: real data and events in.

Job modules are imported inside the handlers (here and in every command group): importing them
all costs about 6 s (pandas, scipy, xgboost, implicit), and `movierec --help` must not wait."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from movierec.cli.common import Subcommands, add_command, emit, exit_codes
from movierec.core.errors import ConfigError
from movierec.core.settings import DATASETS, Settings


def _fetch(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.data.movielens import fetch  # lazy: see the module docstring

    result = fetch(settings, args.dataset, force=args.force)
    emit(args, result.summary(), f"{result.dataset}: {result.path}")
    return 0


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    if args.synthetic:
        return _synthetic(args, settings)
    from movierec.data.replay import replay  # lazy: see the module docstring

    result = replay(
        settings, args.dataset, args.out, start=args.start, end=args.end, seed=args.seed
    )
    emit(args, result.summary(), f"replayed {result.ratings:,} ratings as {result.lines:,} lines")
    return 0


def _synthetic(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.data.synthetic.population import SyntheticSpec  # lazy: see the docstring
    from movierec.data.synthetic.site import generate

    sizes = {"users": args.users, "movies": args.movies, "interactions": args.interactions}
    missing = [f"--{k}" for k, v in sizes.items() if v is None]
    if missing:
        raise ConfigError(f"replay --synthetic needs {', '.join(missing)}")
    seed = settings.training.seed if args.seed is None else args.seed
    result = generate(
        settings, SyntheticSpec(**sizes, seed=seed), args.out or settings.data.event_source
    )
    emit(
        args,
        result.summary(),
        f"synthetic site: {result.interactions:,} interactions of {result.users:,} users as "
        f"{result.lines:,} lines; dataset `synthetic` in {result.dataset_path}",
    )
    return 0


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.data.ingest import ingest  # lazy: see the module docstring
    from movierec.data.sources import Follow

    follow = None
    if args.follow:  # until SIGTERM or SIGINT: the batch in hand is committed, then it stops
        follow = Follow(threading.Event(), settings.data.ingest_flush_seconds, args.heartbeat)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: follow.stop.set())
    result = ingest(settings, args.source, follow)
    emit(args, result.summary(), f"ingested {result.lines:,} lines from {result.source}")
    return 0


def register(sub: Subcommands) -> None:
    data = sub.add_parser("data", help="real MovieLens data", epilog=exit_codes())
    dsub = data.add_subparsers(dest="data_command", required=True)
    f = add_command(dsub, "fetch", "fetch a MovieLens dataset and write canonical tables", _fetch)
    f.add_argument("--dataset", choices=DATASETS, default=None)
    f.add_argument("--force", action="store_true", help="rewrite the tables even if present")

    r = add_command(sub, "replay", "write real MovieLens ratings as the site's event log", _replay)
    r.add_argument("--dataset", choices=DATASETS, default=None)
    r.add_argument("--out", default=None, help="a file path or kafka:TOPIC (default: event source)")
    r.add_argument("--start", type=float, default=0.0, help="fraction of the ratings to start at")
    r.add_argument("--end", type=float, default=1.0, help="fraction of the ratings to end at")
    r.add_argument("--seed", type=int, default=None)
    r.add_argument(
        "--synthetic",
        action="store_true",
        help="instead: a site of --users, --movies, --interactions shaped by ml-1m, and the "
        "`synthetic` dataset's tables",
    )
    r.add_argument("--users", type=int, default=None)
    r.add_argument("--movies", type=int, default=None)
    r.add_argument("--interactions", type=int, default=None)
    r.add_argument(
        "--lake",
        action="store_true",
        help="with --synthetic: commit the events into an empty lake as `ingest` would, "
        "instead of writing the log (a shortcut for training benchmarks)",
    )

    i = add_command(sub, "ingest", "DataPipeline: new events -> validated Parquet tables", _ingest)
    i.add_argument(
        "--source", default=None, help="a file path or kafka:TOPIC (default: event source)"
    )
    i.add_argument(
        "--follow",
        action="store_true",
        help="keep reading: commit new events within MOVIEREC_INGEST_FLUSH_SECONDS, rebuild the "
        "tables every MOVIEREC_INGEST_REFRESH_SECONDS; stop on SIGTERM/SIGINT (exit 0)",
    )
    i.add_argument(
        "--heartbeat",
        type=Path,
        default=None,
        help="with --follow: a file touched at least every flush period (for a health check)",
    )
