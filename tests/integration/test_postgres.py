"""The PostgreSQL event store against a real server: every event exactly once, also when the
DataPipeline is killed in the middle of a batch."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from movierec.core.settings import Settings
from movierec.data.ingest import ingest
from movierec.data.lake import LakeState, load_lake
from movierec.data.replay import replay
from tests.conftest import make_settings
from tests.integration.pgserver import postgres_server
from tests.unit.data.test_ingest import _run_ingest

TABLES = ("movierec_watches", "movierec_rates", "movierec_recommendations", "movierec_quarantine")
MALFORMED = 37


@pytest.fixture
def dsn() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def _events(settings: Settings) -> Path:
    """A fifth of ml-100k as events, with malformed lines mixed in."""
    replay(settings, "ml-100k", settings.data.event_source, end=0.2)
    path = settings.path(settings.data.event_source)
    lines = path.read_text().splitlines()
    rng = random.Random(5)
    for k in range(MALFORMED):
        lines.insert(rng.randrange(len(lines)), f"2025-01-01T00:00:00,{k},GET /nowhere")
    path.write_text("\n".join(lines) + "\n")
    return path


def _counts(dsn: str, database: str) -> dict[str, int]:
    with psycopg.connect(dsn.rsplit("/", 1)[0] + f"/{database}") as conn:
        out = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}  # type: ignore[index]
        out["ratings_view"] = conn.execute("SELECT count(*) FROM movierec_ratings").fetchone()[0]  # type: ignore[index]
        return out


def _database(dsn: str, name: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return dsn.rsplit("/", 1)[0] + f"/{name}"


@pytest.mark.slow
def test_events_reach_postgres_once_and_a_second_run_adds_nothing(
    dsn: str, ml100k_settings: Settings
) -> None:
    s = ml100k_settings.replace(postgres_dsn=_database(dsn, "once"), ingest_batch_lines=20_000)
    _events(s)
    first = ingest(s)
    counts = _counts(dsn, "once")
    lake = load_lake(s)
    assert first.quarantined == MALFORMED
    assert counts["movierec_quarantine"] == MALFORMED
    assert counts["movierec_watches"] == len(lake.watches)
    assert counts["movierec_rates"] == counts["ratings_view"] == len(lake.ratings)
    ingest(s)  # nothing new in the source
    assert _counts(dsn, "once") == counts


@pytest.mark.slow
def test_sigkill_mid_batch_then_resume_writes_every_event_once(
    dsn: str, tmp_path: Path, ml100k_settings: Settings
) -> None:
    log = _events(ml100k_settings)
    reference = make_settings(tmp_path / "reference")
    reference.data_path.mkdir(parents=True)
    os.link(log, reference.path(reference.data.event_source))
    ref_env = {"MOVIEREC_POSTGRES_DSN": _database(dsn, "reference")}
    assert _run_ingest(reference.home, ref_env).returncode == 0

    victim = ml100k_settings
    env = {"MOVIEREC_POSTGRES_DSN": _database(dsn, "victim")}
    # killed after PostgreSQL committed batch 2, before the pipeline committed it
    assert (
        _run_ingest(victim.home, env | {"MOVIEREC_FAULT": "ingest.after-postgres:2"}).returncode
        == -9
    )
    # killed after the parts of a batch were written, before PostgreSQL saw it
    assert (
        _run_ingest(victim.home, env | {"MOVIEREC_FAULT": "ingest.after-parts:2"}).returncode == -9
    )
    # killed at a random moment once something was committed
    proc = _run_ingest(victim.home, env, wait=False)
    seq0 = LakeState.load(victim).seq
    deadline = time.monotonic() + 120
    while LakeState.load(victim).seq == seq0 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(random.Random(3).uniform(0, 0.3))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _run_ingest(victim.home, env).returncode == 0
    assert _counts(dsn, "victim") == _counts(dsn, "reference")
    assert _counts(dsn, "victim")["movierec_quarantine"] == MALFORMED
