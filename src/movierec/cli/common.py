"""What every command group shares: the handler type, output (a short readable summary by
default, JSON with `--json`) and the exit codes every command documents."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping

from movierec.core.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]
Subcommands = argparse._SubParsersAction  # what `add_subparsers` returns: commands go there

EXIT_OK = 0
EXIT_ERROR = 1  # a known error (its one-line message is printed), or an unexpected one
EXIT_USAGE = 2
EXIT_ABORT = 3  # `release evaluate`: the decision was ABORT
COMMON_EXIT_CODES = (
    f"{EXIT_OK} success, {EXIT_ERROR} an error (a known one prints a one-line message), "
    f"{EXIT_USAGE} bad usage"
)


def exit_codes(extra: str = "") -> str:
    """The `Exit codes:` paragraph of a command's --help."""
    return f"Exit codes: {COMMON_EXIT_CODES}{'; ' + extra if extra else ''}."


def add_command(
    sub: Subcommands, name: str, help_text: str, handler: Handler, *, codes: str = ""
) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with its exit codes, with a --json switch."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help_text,
        description=f"{help_text[0].upper()}{help_text[1:]}.",
        epilog=exit_codes(codes),
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a summary")
    parser.set_defaults(handler=handler)
    return parser


def print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def emit(args: argparse.Namespace, summary: Mapping[str, object], title: str = "") -> None:
    """JSON with --json; otherwise `title` and one `key: value` line per top-level entry."""
    if getattr(args, "json", False):
        print_json(summary)
        return
    if title:
        print(title)
    width = max((len(str(k)) for k in summary), default=0)
    for key, value in summary.items():
        print(f"  {str(key).ljust(width)}  {_short(value)}")


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{k} {_short(v)}" for k, v in value.items())
        return inner if len(inner) <= 100 else inner[:97] + "..."
    if isinstance(value, list | tuple):
        text = ", ".join(_short(v) for v in value)
        return text if len(text) <= 100 else f"{len(value)} items"
    return str(value)
