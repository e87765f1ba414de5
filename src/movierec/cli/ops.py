"""`movierec simulate`, `movierec demo`: running the system (lazy job imports: see
`movierec.cli.data`)."""

from __future__ import annotations

import argparse

from movierec.cli.common import Subcommands, add_command, emit
from movierec.core.settings import Settings


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.ops.simulate import Traffic, simulate  # lazy: start-up time

    traffic = Traffic(
        args.url.rstrip("/"), args.requests, args.rate, args.concurrency, args.seed, args.out
    )
    result = simulate(settings, traffic)
    emit(args, result.summary(), f"simulated {result.requests} requests")
    return 0 if result.failed == 0 else 1


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.ops.demo import run_demo  # lazy: start-up time

    demo_settings = settings.replace(
        tune_iterations=min(settings.training.tune_iterations, 4),
        tune_seconds=min(settings.training.tune_seconds, 30.0),
        min_samples_per_arm=min(settings.release.min_samples_per_arm, 150),
    )
    summary = run_demo(demo_settings)
    return 0 if summary["failed_requests"] == 0 else 1


def register(sub: Subcommands) -> None:
    p = add_command(
        sub,
        "simulate",
        "simulated users request recommendations over HTTP and write watch/rate events",
        _simulate,
        codes="1 also when any request failed",
    )
    p.add_argument("--url", default="http://127.0.0.1:8080", help="the running service")
    p.add_argument("--requests", type=int, default=1000, help="how many requests to send")
    p.add_argument("--rate", type=float, default=50.0, help="requests per second")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--seed", type=int, default=None, help="default: MOVIEREC_SEED")
    p.add_argument("--out", default=None, help="event log: a path or kafka:TOPIC")
    add_command(
        sub,
        "demo",
        "the whole life cycle on ml-100k, with a timeline and a report",
        _demo,
        codes="1 also when any simulated request failed",
    )
