"""The `movierec` command: one subcommand per job, registered by its command group. Handlers
parse, call a job, print a short summary (JSON with --json), and pick the exit code.

Exit codes: 0 success, 1 a known error (its message is printed), 2 bad usage; jobs with
more outcomes (retrain, release, deploy) document their own codes in their --help.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from movierec import __version__
from movierec.cli import config, data, model, ops, release, retrain, serve, trust
from movierec.cli.common import Handler, exit_codes
from movierec.core.errors import MovierecError
from movierec.core.logs import configure_logging
from movierec.core.settings import Settings
from movierec.core.threads import share_cores

# the optional extra (pyproject.toml) that brings each training/report/tracking library
_EXTRA_OF = {"implicit": "train", "sklearn": "train", "matplotlib": "report", "mlflow": "tracking"}

_GROUPS = (data, model, serve, retrain, release, ops, trust, config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="movierec", description=__doc__.split("\n\n")[0], epilog=exit_codes()
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"movierec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in _GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    share_cores()  # before a handler imports XGBoost or implicit
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging("DEBUG" if args.verbose else None)
    try:
        settings = Settings.from_env()
        if getattr(args, "dataset", None) is None and hasattr(args, "dataset"):
            args.dataset = settings.data.dataset
        if getattr(args, "out", None) is None and hasattr(args, "out"):
            args.out = settings.data.event_source
        handler: Handler = args.handler
        return handler(args, settings)
    except MovierecError as exc:
        print(f"movierec: error: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:  # a lean install (the service image) lacks an extra
        extra = _EXTRA_OF.get((exc.name or "").split(".")[0], "train,report,tracking")
        print(
            f"movierec: error: {exc.name} is not installed; this command needs the optional "
            f"dependencies: pip install 'movierec[{extra}]'",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("movierec: interrupted", file=sys.stderr)
        return 130
