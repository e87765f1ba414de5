"""`movierec train`, `movierec evaluate`, `movierec offline-eval`: models (lazy job imports:
see `movierec.cli.data`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from movierec.cli.common import Subcommands, add_command, emit, print_json
from movierec.core.settings import DATASETS, Settings


def _train(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.retrain.training import train_and_route  # lazy: start-up time

    out = train_and_route(settings, tune=not args.no_tune, serve_if_none=args.serve_if_none)
    emit(args, out, f"trained {out['version']}")
    return 0


def _evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.retrain.training import evaluate_version  # lazy: start-up time

    metrics = evaluate_version(settings, args.version)
    if args.json:
        print_json(metrics)
    else:
        emit(args, {k: v for k, v in metrics.items() if not isinstance(v, dict)}, args.version)
    return 0


def _offline_eval(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.offline.offline_eval import offline_eval  # lazy: start-up time

    result = offline_eval(settings, Path(args.train), Path(args.test), Path(args.out), args.dataset)
    emit(args, result.summary(), f"offline evaluation written to {result.out}")
    return 0


def register(sub: Subcommands) -> None:
    t = add_command(sub, "train", "train a candidate from the lake and register it", _train)
    t.add_argument("--no-tune", action="store_true", help="default parameters, no search")
    t.add_argument(
        "--serve-if-none", action="store_true", help="route it as stable if nothing is served yet"
    )
    e = add_command(sub, "evaluate", "a version's metrics on the fixed holdout", _evaluate)
    e.add_argument("version")
    o = add_command(
        sub,
        "offline-eval",
        "train on any ratings split and write predictions, top-k, metrics",
        _offline_eval,
    )
    o.add_argument("--train", required=True)
    o.add_argument("--test", required=True)
    o.add_argument("--out", required=True)
    o.add_argument("--dataset", choices=DATASETS, default=None)
