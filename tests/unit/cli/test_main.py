"""The command's own surface: --version, `config` with each value's source, exit codes in
every --help, a missing optional extra as one line."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

from movierec import __version__
from movierec.cli import main
from movierec.cli.main import build_parser


def _subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    """Every (path, parser) below `parser`, groups and their commands alike."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _subcommands(sub, (*prefix, name))


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"movierec {__version__}"


def test_every_help_lists_exit_codes() -> None:
    parsers = [((), build_parser()), *_subcommands(build_parser())]
    assert len(parsers) > 15
    missing = [" ".join(path) for path, p in parsers if "Exit codes" not in p.format_help()]
    assert missing == []


def test_config_says_where_each_value_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MOVIEREC_HOME", str(tmp_path))
    monkeypatch.setenv("MOVIEREC_PORT", "9123")
    monkeypatch.delenv("MOVIEREC_WORKERS", raising=False)
    assert main(["config", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["port"] == {
        "section": "serving", "name": "port", "variable": "MOVIEREC_PORT",
        "value": "9123", "source": "environment",
    }  # fmt: skip
    assert rows["workers"]["source"] == "default"
    assert main(["config"]) == 0
    human = capsys.readouterr().out
    assert "[serving]" in human and "MOVIEREC_PORT" in human and "9123  (environment)" in human


def test_a_bad_setting_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MOVIEREC_HOME", str(tmp_path))
    monkeypatch.setenv("MOVIEREC_PORT", "eighty")
    assert main(["config"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("movierec: error:") and "MOVIEREC_PORT" in err and "\n" not in err


def test_openmp_threads_sleep_while_waiting_unless_the_operator_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "unset below")
    monkeypatch.delenv("OMP_WAIT_POLICY")
    with pytest.raises(SystemExit):
        main(["--version"])
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    with pytest.raises(SystemExit):
        main(["--version"])
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_the_top_level_help_gives_its_description_whole() -> None:
    text = " ".join(build_parser().format_help().split())
    assert "registered by its command group. Handlers parse, call a job" in text
    assert "and pick the exit code." in text


def test_retrain_help_says_where_a_promoted_candidate_goes() -> None:
    retrain = dict(_subcommands(build_parser()))[("retrain",)]
    text = " ".join(retrain.format_help().split())
    assert "promote to canary" not in text
    assert "shadow" in text
