"""The `movierec` command: one module per command group; handlers parse, call a job, print,
and pick the exit code."""

from movierec.cli.main import main

__all__ = ["main"]
