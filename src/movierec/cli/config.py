"""`movierec config`: every setting, its value and where the value came from."""

from __future__ import annotations

import argparse

from movierec.cli.common import Subcommands, add_command, print_json
from movierec.core.settings import ENV_PREFIX, Settings


def settings_table(settings: Settings) -> list[dict[str, str]]:
    """One row per setting: section, name, environment variable, value, source."""
    return [
        {
            "section": section,
            "name": name,
            "variable": ENV_PREFIX + name.upper(),
            "value": str(value),
            "source": settings.origin.get(name, "default"),
        }
        for name, section, value in settings.items()
    ]


def _config(args: argparse.Namespace, settings: Settings) -> int:
    rows = settings_table(settings)
    if args.json:
        print_json(rows)
        return 0
    width = max(len(r["variable"]) for r in rows)
    section = None
    for r in rows:
        if r["section"] != section:
            section = r["section"]
            print(f"[{section}]")
        print(f"  {r['variable'].ljust(width)}  {r['value']}  ({r['source']})")
    return 0


def register(sub: Subcommands) -> None:
    add_command(
        sub,
        "config",
        "every setting with its value and where it came from (default or environment)",
        _config,
    )
