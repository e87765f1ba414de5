"""`movierec retrain`: the cron job (lazy job imports: see `movierec.cli.data`)."""

from __future__ import annotations

import argparse

from movierec.cli.common import Subcommands, add_command, emit
from movierec.core.settings import Settings


def _retrain(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.retrain.job import retrain  # lazy: start-up time

    result = retrain(settings, force=args.force)
    emit(args, result.summary(), f"retrain: {result.decision} ({result.reason})")
    return int(result.code)


def register(sub: Subcommands) -> None:
    p = add_command(
        sub,
        "retrain",
        "cron job: refresh data, gate, train, compare; a better model starts in shadow (the "
        "first one becomes stable)",
        _retrain,
        codes="3 nothing to do (gate not met), 4 candidate rejected, "
        "5 busy (another run holds the lock); 0 means promoted",
    )
    p.add_argument("--force", action="store_true", help="skip the new-data gate")
