"""`movierec release evaluate|status|set-canary`: the canary release (lazy job imports: see
`movierec.cli.data`)."""

from __future__ import annotations

import argparse
from typing import Any

from movierec.cli.common import add_command, emit, print_json
from movierec.core.files import read_json
from movierec.core.settings import Settings


def _evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.release.evaluator import evaluate_release  # lazy: start-up time

    result = evaluate_release(settings, apply=not args.dry_run, refresh=not args.no_refresh)
    summary = result.summary()
    if args.json:
        print_json(summary)
    else:
        emit(args, {k: summary[k] for k in ("decision", "reasons", "pct_before", "pct_after")})
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.registry.routing import read_routing  # lazy: start-up time

    routing = read_routing(settings)
    print_json(
        {
            "routing": routing and routing.as_dict(),
            "online_metrics": read_json(settings.online_metrics_file),
        }
    )
    return 0


def _set_canary(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.registry.routing import set_canary  # lazy: start-up time

    routing = set_canary(settings, args.version, args.pct, args.reason)
    emit(args, routing.as_dict(), "routing updated")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("release", help="canary release: evaluate, status, set-canary")
    rsub = p.add_subparsers(dest="release_command", required=True)
    e = add_command(
        rsub,
        "evaluate",
        "online evaluation: RAMP / HOLD / ABORT / PROMOTE the canary",
        _evaluate,
        codes="the decision itself does not change the exit code",
    )
    e.add_argument("--dry-run", action="store_true", help="decide and report, change nothing")
    e.add_argument("--no-refresh", action="store_true", help="do not ingest new events first")
    add_command(rsub, "status", "routing and the latest online metrics", _status)
    c = add_command(rsub, "set-canary", "route a registered version as canary", _set_canary)
    c.add_argument("version")
    c.add_argument("--pct", type=int, default=10)
    c.add_argument("--reason", default="set by hand")
