"""The `movierec` command: one subcommand per job. Handlers parse, call a job, print, exit.

Job modules are imported inside the handlers, so `movierec --help` stays fast and a command
only loads what it uses.

Exit codes: 0 success, 1 a known error (its message is printed), 2 bad usage; jobs with
more outcomes (retrain, release) document their own codes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from movierec.config import DATASETS, Settings
from movierec.errors import MovierecError
from movierec.logs import configure_logging

log = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace, Settings], int]


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


# ---- data ------------------------------------------------------------------------------


def _cmd_data_fetch(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.data.movielens import fetch

    result = fetch(settings, args.dataset, force=args.force)
    _print_json(result.summary())
    return 0


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="real MovieLens data")
    dsub = p.add_subparsers(dest="data_command", required=True)
    f = dsub.add_parser("fetch", help="fetch a MovieLens dataset and write canonical tables")
    f.add_argument("--dataset", choices=DATASETS, default=None)
    f.add_argument("--force", action="store_true", help="rewrite the tables even if present")
    f.set_defaults(handler=_cmd_data_fetch)


# ---- retrain ---------------------------------------------------------------------------


def _cmd_retrain(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.retrain import retrain

    result = retrain(settings, force=args.force)
    _print_json(result.summary())
    return int(result.code)


def _add_retrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "retrain",
        help="cron job: refresh data, gate, train, compare, promote to canary",
        description="Exit codes: 0 promoted, 3 nothing to do (gate not met), "
        "4 candidate rejected, 5 busy (another run holds the lock), 1 error.",
    )
    p.add_argument("--force", action="store_true", help="skip the new-data gate")
    p.set_defaults(handler=_cmd_retrain)


# ---- parser ----------------------------------------------------------------------------

_REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_data,
    _add_retrain,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="movierec", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in _REGISTRARS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging("DEBUG" if args.verbose else None)
    try:
        settings = Settings.from_env()
        if getattr(args, "dataset", None) is None and hasattr(args, "dataset"):
            args.dataset = settings.dataset
        handler: Handler = args.handler
        return handler(args, settings)
    except MovierecError as exc:
        print(f"movierec: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("movierec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
