"""`movierec ingest --follow` as a real process: killed with SIGKILL at the worst moments and
at random, restarted, fed more events while it runs, then stopped with SIGTERM, it ends with
exactly the lake tables and the online store of one uninterrupted run; its tables are rebuilt
(and its parts merged) while it follows."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from movierec.core.settings import Settings
from movierec.data.lake import LakeState, load_lake
from movierec.data.positions import FilePosition
from movierec.data.replay import replay
from tests.conftest import CACHE, make_settings
from tests.historykit import store_rows
from tests.servicekit import wait_until


def _start(settings: Settings, fault: str = "", follow: bool = True) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        {
            "MOVIEREC_HOME": str(settings.home),
            "MOVIEREC_CACHE_DIR": str(CACHE),
            "MOVIEREC_GROUPLENS_URL": "",
            "MOVIEREC_INGEST_BATCH_LINES": "20000",
            "MOVIEREC_INGEST_FLUSH_SECONDS": "0.2",
            "MOVIEREC_INGEST_REFRESH_SECONDS": "1",
            "MOVIEREC_INGEST_COMPACT_PARTS": "12",
            "MOVIEREC_FAULT": f"ingest.{fault}" if fault else "",
        }
    )
    args = [sys.executable, "-m", "movierec.cli", "ingest", *(["--follow"] if follow else [])]
    log = open(settings.home / "ingest.log", "ab")  # noqa: SIM115 - the child holds it
    return subprocess.Popen(args, env=env, stdout=log, stderr=log)


def _offset(settings: Settings) -> int:
    key = str(settings.path(settings.data.event_source).resolve())
    position = LakeState.load(settings).positions.get(key)
    return position.offset if isinstance(position, FilePosition) else -1


def _caught_up(settings: Settings) -> bool:
    return _offset(settings) == settings.path(settings.data.event_source).stat().st_size


def _assert_same(reference: Settings, victim: Settings) -> None:
    a, b = load_lake(reference), load_lake(victim)
    for name in ("interactions", "ratings", "watches", "users"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), obj=name)
    pd.testing.assert_frame_equal(store_rows(reference), store_rows(victim), obj="store")


@pytest.mark.slow
def test_follow_survives_sigkill_and_ends_like_one_uninterrupted_run(
    tmp_path: Path, ml100k_settings: Settings
) -> None:
    victim = ml100k_settings
    replay(victim, "ml-100k", victim.data.event_source, end=0.2)
    # killed after the parts of batch 3, after the online store saw batch 2 of the next run,
    # and after committing batch 2 of the next one (before the Kafka-style commit)
    for fault in ("after-parts:3", "after-online:2", "after-commit:2"):
        assert _start(victim, fault).wait(timeout=300) == -signal.SIGKILL, fault
    # killed at a random moment once it has committed something
    proc = _start(victim)
    seq0 = LakeState.load(victim).seq
    wait_until(lambda: LakeState.load(victim).seq > seq0, timeout=120, interval=0.01)
    time.sleep(random.Random(3).uniform(0, 0.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # a follower catches up, then follows what is appended while it runs
    proc = _start(victim)
    try:
        wait_until(lambda: _caught_up(victim), timeout=300, interval=0.1)
        wait_until(lambda: LakeState.load(victim).refreshed is not None, timeout=60)
        replay(victim, "ml-100k", victim.data.event_source, start=0.2, end=0.3)
        wait_until(lambda: _caught_up(victim), timeout=300, interval=0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    state = LakeState.load(victim)
    assert len(state.parts) <= 12 + 4  # merged while following
    assert state.refreshed is not None
    assert state.refreshed.seq == state.seq  # the tables cover every commit
    # the reference: one uninterrupted run over the same file
    reference = make_settings(tmp_path / "reference")
    reference.data_path.mkdir(parents=True)
    os.link(victim.path(victim.data.event_source), reference.path(reference.data.event_source))
    assert _start(reference, follow=False).wait(timeout=300) == 0
    _assert_same(reference, victim)
    assert not any(p.name.startswith(".") for p in (victim.lake_path / "parts").iterdir())
