"""`movierec release evaluate|status|set-canary|promote|abort`: the candidate's release (lazy
job imports: see `movierec.cli.data`)."""

from __future__ import annotations

import argparse
import sys

from movierec.cli.common import (
    EXIT_ABORT,
    EXIT_USAGE,
    Subcommands,
    add_command,
    emit,
    exit_codes,
    print_json,
)
from movierec.core.online_metrics import OnlineMetrics
from movierec.core.settings import Settings

EVALUATE_CODES = (
    f"{EXIT_ABORT} the decision was ABORT (the candidate was, or with --dry-run would be, "
    "sent back; cron can alert on it); 0 means evaluated: RAMP, HOLD, PROMOTE or nothing to "
    "release"
)


def _evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.release.evaluator import evaluate_release  # lazy: start-up time

    result = evaluate_release(settings, apply=not args.dry_run, refresh=not args.no_refresh)
    summary = result.summary()
    if args.json:
        print_json(summary)
    else:
        keys = ("decision", "stage", "reasons", "lift", "pct_before", "pct_after")
        emit(args, {k: summary[k] for k in keys})
    return EXIT_ABORT if str(result.decision) == "ABORT" else 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.registry.routing import read_routing  # lazy: start-up time

    routing = read_routing(settings)
    metrics = OnlineMetrics.load(settings.online_metrics_file)
    print_json(
        {
            "routing": routing and routing.as_dict(),
            "online_metrics": metrics and metrics.to_json(),
        }
    )
    return 0


def _set_canary(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.registry.routing import set_canary  # lazy: start-up time

    routing = set_canary(settings, args.version, args.pct, args.reason)
    emit(args, routing.as_dict(), "routing updated")
    return 0


def _promote(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.release.overrides import force_promote  # lazy: start-up time

    if not args.force:
        print(
            "movierec: error: promote overrides the evaluator's evidence: add --force "
            "(and --reason TEXT)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    record = force_promote(settings, args.reason)
    emit(args, record.__dict__, f"{record.candidate} promoted by {record.user}")
    return 0


def _abort(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.release.overrides import abort  # lazy: start-up time

    record = abort(settings, args.reason)
    emit(args, record.__dict__, f"{record.candidate} aborted by {record.user}")
    return 0


def register(sub: Subcommands) -> None:
    p = sub.add_parser(
        "release",
        help="release: evaluate, status, set-canary, promote, abort",
        epilog=exit_codes(f"evaluate: {EVALUATE_CODES}"),
    )
    rsub = p.add_subparsers(dest="release_command", required=True)
    e = add_command(
        rsub,
        "evaluate",
        "online evaluation: RAMP / HOLD / ABORT / PROMOTE the shadow or canary candidate",
        _evaluate,
        codes=EVALUATE_CODES,
    )
    e.add_argument("--dry-run", action="store_true", help="decide and report, change nothing")
    e.add_argument("--no-refresh", action="store_true", help="do not ingest new events first")
    add_command(rsub, "status", "routing and the latest online metrics", _status)
    c = add_command(rsub, "set-canary", "route a registered version as canary", _set_canary)
    c.add_argument("version")
    c.add_argument("--pct", type=int, default=10)
    c.add_argument("--reason", default="set by hand")
    f = add_command(
        rsub,
        "promote",
        "override: make the candidate stable now (logged with your OS user and the reason)",
        _promote,
        codes="2 also without --force",
    )
    f.add_argument("--force", action="store_true", help="required: this overrides the evidence")
    f.add_argument("--reason", required=True, help="why (recorded)")
    a = add_command(
        rsub,
        "abort",
        "override: send everyone back to stable now (logged with your OS user and the reason)",
        _abort,
    )
    a.add_argument("--reason", required=True, help="why (recorded)")
