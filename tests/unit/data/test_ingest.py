"""The DataPipeline: bad lines quarantined and counted, incremental runs, exact resumption
after SIGKILL, and the refresh report."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from movierec.core.settings import Settings
from movierec.data import ingest as pipeline
from movierec.data.events import format_rate, format_recommendation, format_watch, parse_lines
from movierec.data.ingest import IngestResult, ingest
from movierec.data.lake import LakeState, load_lake
from movierec.data.positions import FilePosition
from movierec.data.sources import Batch
from tests.conftest import make_settings

T = pd.Timestamp("2025-03-01T00:00:00Z").to_pydatetime()


def _valid_lines(rng: random.Random, n: int) -> list[str]:
    out = []
    for i in range(n):
        user, movie = rng.randrange(200), f"movie+{rng.randrange(300)}+1999"
        ts = T.replace(minute=i % 60, second=i % 60, hour=i // 3600 % 24)
        kind = rng.random()
        if kind < 0.8:
            out.append(format_watch(ts, user, movie, rng.randrange(120)))
        elif kind < 0.95:
            out.append(format_rate(ts, user, movie, rng.randint(1, 5)))
        else:
            out.append(
                format_recommendation(ts, user, "10.0.0.1:8082", 200, [movie, "heat+1995"], 7)
            )
    return out


def _garbage(rng: random.Random, valid: str) -> str:
    choice = rng.randrange(8)
    if choice == 0:
        return "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(1, 60)))
    if choice == 1:
        return valid[: rng.randrange(1, len(valid) - 1)]  # truncated
    if choice == 2:
        return valid.replace("GET /rate/", "GET /rate/Bad Title ") if "/rate/" in valid else "x,y"
    if choice == 3:
        return valid.rsplit(",", 1)[0] + ",GET /rate/heat+1995=9"
    if choice == 4:
        return valid.split(",", 1)[0] + ",-5," + valid.split(",", 2)[2]
    if choice == 5:
        return "2025-02-30" + valid[10:]
    if choice == 6:
        return valid.replace(".mpg", "/-1.mpg") if ".mpg" in valid else "nonsense,,"
    return " "


def _write(path: Path, lines: list[str | bytes]) -> None:
    with open(path, "ab") as f:
        for line in lines:
            f.write((line if isinstance(line, bytes) else line.encode()) + b"\n")


def test_mixed_bad_lines_are_quarantined_and_every_valid_event_lands(settings: Settings) -> None:
    rng = random.Random(7)
    valid = _valid_lines(rng, 30_000)
    bad: list[str | bytes] = [_garbage(rng, rng.choice(valid)) for _ in range(9_990)]
    bad += [b"\xff\xfe\xfa not utf-8 \x80"] * 10  # undecodable bytes
    mixed: list[str | bytes] = [*valid, *bad]
    rng.shuffle(mixed)
    path = settings.path(settings.data.event_source)
    path.parent.mkdir(parents=True)
    _write(path, mixed)
    result = ingest(settings)
    assert result.lines == 40_000
    assert result.quarantined == 10_000
    assert result.accepted == 30_000
    quarantine = [
        json.loads(x) for x in (settings.data_path / "quarantine.jsonl").read_text().splitlines()
    ]
    assert len(quarantine) == 10_000
    assert all(q["reason"] and q["position"] and q["source"] for q in quarantine)
    lake = load_lake(settings)
    watches = {line for line in valid if ".mpg" in line}
    distinct_minutes = {(w.split(",")[1], w.split("/")[3], w.split("/")[4]) for w in watches}
    assert lake.interactions["minutes"].sum() == len(distinct_minutes)
    parsed = parse_lines(sorted(watches)).watches
    assert len(lake.watches) == len(parsed.drop_duplicates())
    rates = [line for line in valid if "/rate/" in line]
    latest = {}
    for line in rates:
        ts, user, rest = line.split(",", 2)
        movie, rating = rest.removeprefix("GET /rate/").split("=")
        key = (int(user), movie)
        if key not in latest or ts >= latest[key][0]:
            latest[key] = (ts, int(rating))
    assert len(lake.ratings) == len(latest)
    got = {(r.user_id, r.movie_id): r.rating for r in lake.ratings.itertuples()}
    assert got == {k: v[1] for k, v in latest.items()}
    report = json.loads(Path(result.report_path).read_text())
    assert report["quarantined"] == 10_000
    assert sum(report["quarantine_by_reason"].values()) == 10_000


def test_ingest_is_incremental_and_idempotent(settings: Settings) -> None:
    rng = random.Random(1)
    path = settings.path(settings.data.event_source)
    path.parent.mkdir(parents=True)
    first = _valid_lines(rng, 2_000)
    _write(path, first)
    a = ingest(settings)
    tables_a = load_lake(settings)
    b = ingest(settings)
    assert b.lines == 0 and all(v == 0 for v in b.deltas.values())
    assert load_lake(settings).interactions.equals(tables_a.interactions)
    # the same lines again (a producer retry) and a partial line without its newline
    more = _valid_lines(random.Random(2), 500)
    with open(path, "a") as f:
        f.write("\n".join(first[:100] + more) + "\n" + more[0][:10])
    c = ingest(settings)
    assert c.lines == 600
    assert c.deltas["watch_minutes"] >= 0 and a.totals["watch_minutes"] > 0
    position = LakeState.load(settings).positions[str(path.resolve())]
    assert position == FilePosition(path.stat().st_size - 10, path.stat().st_ino)


def test_two_pipelines_reading_one_file_into_one_lake_commit_every_line_once(
    settings: Settings,
) -> None:
    path = settings.path(settings.data.event_source)
    path.parent.mkdir(parents=True)
    lines = _valid_lines(random.Random(5), 20_000)
    _write(path, lines)
    small = settings.replace(ingest_batch_lines=700)
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: ingest(small), range(2)))
    assert sum(r.lines for r in runs) == len(lines)
    state = LakeState.load(settings)
    rows = sum(len(pd.read_parquet(settings.lake_path / "parts" / n)) for n in state.parts)
    assert rows == len(lines)
    reference = make_settings(settings.home / "reference")
    reference.data_path.mkdir(parents=True)
    os.link(path, reference.path(reference.data.event_source))
    ingest(reference)
    _assert_same_tables(reference, settings)


def _big_log(settings: Settings) -> Path:
    from movierec.data.replay import replay

    replay(settings, "ml-100k", settings.data.event_source, end=0.3)
    return settings.path(settings.data.event_source)


def _run_ingest(
    home: Path, env_extra: dict[str, str], wait: bool = True
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        {
            "MOVIEREC_HOME": str(home),
            "MOVIEREC_CACHE_DIR": str(Path(__file__).resolve().parents[2] / ".cache"),
            "MOVIEREC_INGEST_BATCH_LINES": "20000",
            "MOVIEREC_GROUPLENS_URL": "",
        }
    )
    env.update(env_extra)
    proc = subprocess.Popen(
        [sys.executable, "-m", "movierec.cli", "ingest"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if wait:
        proc.wait(timeout=300)
    return proc


def _tables(settings: Settings) -> dict[str, pd.DataFrame]:
    lake = load_lake(settings)
    return {
        "interactions": lake.interactions,
        "ratings": lake.ratings,
        "watches": lake.watches,
        "users": lake.users,
    }


def _assert_same_tables(a: Settings, b: Settings) -> None:
    ta, tb = _tables(a), _tables(b)
    for name in ta:
        pd.testing.assert_frame_equal(ta[name], tb[name], check_like=False, obj=name)


@pytest.mark.slow
def test_sigkill_at_the_worst_moments_and_at_random_then_resume_gives_the_same_tables(
    tmp_path: Path, ml100k_settings: Settings
) -> None:
    log = _big_log(ml100k_settings)
    reference = make_settings(tmp_path / "reference")
    reference.data_path.mkdir(parents=True)
    os.link(log, reference.path(reference.data.event_source))
    assert _run_ingest(reference.home, {}).returncode == 0

    victim = ml100k_settings
    # killed after writing the parts of batch 3 but before committing them
    assert _run_ingest(victim.home, {"MOVIEREC_FAULT": "ingest.after-parts:3"}).returncode == -9
    # killed after committing batch 2 of the resumed run (before its Kafka-style commit)
    assert _run_ingest(victim.home, {"MOVIEREC_FAULT": "ingest.after-commit:2"}).returncode == -9
    # killed at a random moment once it has committed something
    proc = _run_ingest(victim.home, {}, wait=False)
    seq0 = LakeState.load(victim).seq
    deadline = time.monotonic() + 120
    while LakeState.load(victim).seq == seq0 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(random.Random(3).uniform(0, 0.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _run_ingest(victim.home, {}).returncode == 0
    _assert_same_tables(reference, victim)
    assert not any(p.name.startswith(".") for p in (victim.lake_path / "parts").iterdir())


def test_batches_commit_while_the_tables_are_rebuilt(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild takes seconds on a large lake; a follower's commits (and so its online store
    writes) must not wait for it. The old refresh held the lake's lock throughout."""
    rng = random.Random(5)
    source = settings.path(settings.data.event_source)
    source.parent.mkdir(parents=True)
    _write(source, _valid_lines(rng, 300))
    ingest(settings)
    started, release = threading.Event(), threading.Event()
    real = pipeline.materialize

    def slow(*args: object) -> object:
        started.set()
        release.wait(30)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "materialize", slow)
    spec = settings.data.event_source
    key = pipeline._source_key(spec, settings)
    seq = LakeState.load(settings).seq
    refresh = threading.Thread(
        target=pipeline._refresh, args=(settings, spec, key, IngestResult(source=spec))
    )
    refresh.start()
    assert started.wait(30)
    lines = _valid_lines(rng, 50)
    batch = Batch(lines, [str(i) for i in range(50)], FilePosition(1, -1))
    commit = threading.Thread(
        target=pipeline._commit,
        args=(settings, "other", "other", batch, [], IngestResult(source="other")),
    )
    commit.start()
    commit.join(10)
    try:
        assert not commit.is_alive(), "the batch waited for the tables' rebuild"
    finally:
        release.set()
        refresh.join(60)
        commit.join(60)
    state = LakeState.load(settings)
    assert state.seq == seq + 1
    assert state.refreshed is not None
    assert state.refreshed.seq == seq  # the rebuild covered what was committed before it
    assert state.pending.lines == 50  # the batch committed during it: in the next report
