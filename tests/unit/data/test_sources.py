"""Sources: what of a batch is still to commit when another reader committed part of it
first (a follower that took over a Kafka partition, two readers of one file), and a file
source that follows what is appended."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from movierec.core.errors import DataValidationError
from movierec.data.positions import FilePosition, KafkaPosition, position_from_json
from movierec.data.sources import Batch, FileSource, Follow, KafkaSource, unread


def _kafka_batch() -> Batch:
    positions = ["0:10", "1:5", "0:11", "1:6", "0:12", "2:0"]
    return Batch(
        [f"line {p}" for p in positions],
        positions,
        KafkaPosition({0: 13, 1: 7, 2: 1}),
        KafkaPosition({0: 10, 1: 5, 2: 0}),
    )


def test_a_kafka_batch_past_the_committed_offsets_is_kept_whole() -> None:
    batch = _kafka_batch()
    fresh = unread(batch, KafkaPosition({0: 10, 1: 5, 3: 99}))
    assert fresh.lines == batch.lines
    assert fresh.end == KafkaPosition({0: 13, 1: 7, 2: 1, 3: 99})


def test_kafka_lines_another_follower_committed_are_dropped() -> None:
    fresh = unread(_kafka_batch(), KafkaPosition({0: 12, 1: 9}))
    assert fresh.positions == ["0:12", "2:0"]
    assert fresh.lines == ["line 0:12", "line 2:0"]
    assert fresh.end == KafkaPosition({0: 13, 1: 9, 2: 1})  # never moves back


def test_file_lines_before_the_committed_offset_are_dropped() -> None:
    batch = Batch(["a", "bb", "ccc"], ["0", "2", "5"], FilePosition(9, 7), FilePosition(0, 7))
    assert unread(batch, None).lines == ["a", "bb", "ccc"]
    assert unread(batch, FilePosition(0, 7)).lines == ["a", "bb", "ccc"]
    fresh = unread(batch, FilePosition(5, 7))
    assert fresh.lines == ["ccc"] and fresh.end == FilePosition(9, 7)
    assert unread(batch, FilePosition(20, 7)).lines == []
    assert unread(batch, FilePosition(20, 7)).end == FilePosition(20, 7)
    # a replaced file (another inode) is read from its start: the batch stands
    assert unread(batch, FilePosition(5, 8)).lines == ["a", "bb", "ccc"]


def test_a_followed_file_yields_appended_lines_and_heartbeats_until_stopped(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.log"
    path.write_text("one\ntwo\nthr")  # a partial last line waits for its newline
    follow = Follow(threading.Event(), flush_seconds=0.01)
    batches = FileSource(path).batches(100, follow)
    first = next(batches)
    assert first.lines == ["one", "two"] and first.end == FilePosition(8, path.stat().st_ino)
    assert next(batches).lines == []  # a heartbeat: nothing new
    with open(path, "a") as f:
        f.write("ee\nfour\n")
    got: list[str] = []
    while len(got) < 2:
        got += next(batches).lines
    assert got == ["three", "four"]
    follow.stop.set()
    assert list(batches) == []


def test_a_one_shot_kafka_run_waits_its_idle_time_after_a_late_assignment() -> None:
    # under load the group can take longer than the idle time to assign the partitions: the
    # run used to end at once, having fetched nothing (seen as a flaky broker-restart test)
    source = object.__new__(KafkaSource)
    source.idle, source._down_since = 3.0, None
    source._assigned, source._assigned_at = True, 100.0
    start = 95.0  # when the run began reading
    assert not source._done(now=101.0, last=start, deadline_assign=125.0)
    assert source._done(now=103.5, last=start, deadline_assign=125.0)
    source._assigned = False  # not assigned yet: waits until the assignment deadline
    assert not source._done(now=110.0, last=start, deadline_assign=125.0)


def test_positions_read_back_as_the_files_hold_them() -> None:
    for position in (FilePosition(9, 7), KafkaPosition({0: 13, 2: 1}), None):
        raw = position.to_json() if position else {}
        assert position_from_json(raw) == position
    assert KafkaPosition({2: 1, 0: 13}).to_json() == {"offsets": {"0": 13, "2": 1}}
    assert FilePosition(9, 7).to_json() == {"offset": 9, "inode": 7}
    with pytest.raises(DataValidationError, match="state: not a source position"):
        position_from_json({"offsets": {"0": "x"}}, "state")
    with pytest.raises(DataValidationError, match="not a source position"):
        position_from_json({"inode": 7})
