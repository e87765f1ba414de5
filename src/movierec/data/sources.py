"""Where event lines come from: a file tailed from a saved offset, or a Kafka topic.

Both yield batches of decoded lines with the position just after the batch, and never move a
committed position themselves: the DataPipeline commits a position only after the data read
up to it is durably written (the file offset in its state; Kafka offsets in its state first,
then on the broker).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from movierec.core.errors import DataNotFoundError, DataValidationError
from movierec.core.settings import Settings
from movierec.data.positions import FilePosition, KafkaPosition, SourcePosition

if TYPE_CHECKING:  # an optional dependency, imported when a Kafka source is opened
    from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

log = logging.getLogger(__name__)

_BLOCK = 8 << 20
_BROKER_DOWN_SECONDS = 30.0  # a Kafka broker restarting is waited for this long


@dataclass
class Batch:
    lines: list[str]
    positions: list[str]  # where each line came from: "offset" or "partition:offset"
    end: SourcePosition  # the source position after this batch (what to save)
    start: SourcePosition | None = None  # the position of its first lines


@dataclass
class Follow:
    """Keep reading past the end of the source (`ingest --follow`) until `stop` is set; a
    partial batch waits at most `flush_seconds` for its commit. While nothing arrives the
    source yields an empty batch every `flush_seconds`, so the caller can do periodic work."""

    stop: threading.Event
    flush_seconds: float = 0.5
    heartbeat: Path | None = None  # touched at least every flush period (a health check)

    def wait(self) -> bool:
        """Pause for one flush period; True when asked to stop."""
        return self.stop.wait(self.flush_seconds)

    def beat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.touch()


Positions = Callable[[], SourcePosition | None]  # the source's committed position, read fresh


@dataclass
class FileSource:
    """Complete lines of a file from byte `offset` on; a partial last line waits for the
    next read. The file's inode and size are checked so that a replaced or truncated file is
    noticed instead of being read from a wrong offset."""

    path: Path
    committed: Positions = field(default=lambda: None)

    def describe(self) -> dict[str, str]:
        return {"kind": "file", "path": str(self.path)}

    def batches(self, max_lines: int, follow: Follow | None = None) -> Iterator[Batch]:
        if follow is not None and not self.path.exists():
            log.warning("event source %s does not exist yet: waiting for it", self.path)
            while not self.path.exists():
                if follow.wait():
                    return
        if not self.path.exists():
            raise DataNotFoundError(f"event source {self.path} does not exist")
        offset, inode = self._start(self.committed())
        while True:
            for batch, end, end_inode in self._read(offset, max_lines):
                offset, inode = end, end_inode
                yield batch
            if follow is None or follow.wait():
                return
            yield Batch([], [], FilePosition(offset, inode))  # a heartbeat
            offset, inode = self._start(FilePosition(offset, inode))

    def _start(self, position: SourcePosition | None) -> tuple[int, int]:
        """Where to read from: the position, unless the file was replaced or truncated."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise DataNotFoundError(f"event source {self.path} does not exist") from None
        saved = position if isinstance(position, FilePosition) else None
        offset = saved.offset if saved else 0
        if saved and (saved.inode != st.st_ino or st.st_size < offset):
            log.warning(
                "%s was replaced or truncated (saved offset %d, size %d): reading from the start",
                self.path,
                offset,
                st.st_size,
            )
            offset = 0
        return offset, st.st_ino

    def _read(self, offset: int, max_lines: int) -> Iterator[tuple[Batch, int, int]]:
        """Batches of the complete lines from `offset` to the end of the file, each with the
        offset after it and the file's inode."""
        with open(self.path, "rb") as f:
            inode = os.fstat(f.fileno()).st_ino
            f.seek(offset)
            pending = b""
            lines: list[str] = []
            positions: list[str] = []
            pos = offset
            while True:
                block = f.read(_BLOCK)
                if not block:
                    break
                data = pending + block
                cut = data.rfind(b"\n")
                if cut < 0:
                    pending = data
                    continue
                pending = data[cut + 1 :]
                for raw in data[: cut + 1].split(b"\n")[:-1]:
                    positions.append(str(pos))
                    pos += len(raw) + 1
                    lines.append(raw.decode("utf-8", errors="replace"))
                    if len(lines) >= max_lines:
                        yield self._batch(lines, positions, pos, inode)
                        lines, positions = [], []
            if lines:
                yield self._batch(lines, positions, pos, inode)

    def _batch(
        self, lines: list[str], positions: list[str], pos: int, inode: int
    ) -> tuple[Batch, int, int]:
        start = FilePosition(int(positions[0]), inode)
        return Batch(lines, positions, FilePosition(pos, inode), start), pos, inode

    def commit(self, position: SourcePosition) -> None:
        """Nothing to tell a file: the pipeline's state holds the offset."""

    def close(self) -> None:
        pass


class KafkaSource:
    """A topic read by a consumer group. Each partition assigned to this consumer starts at the
    offset committed in the pipeline's state, read when the partition is assigned (so a
    follower taking over a partition starts where the last one committed), else at the group's
    committed offset, else at the beginning. Without `follow`, reads until no message arrived
    for `idle_seconds`."""

    def __init__(
        self, settings: Settings, topic: str, committed: Positions, idle_seconds: float = 3.0
    ):
        from confluent_kafka import Consumer

        self.topic = topic
        self.committed = committed
        self.idle = idle_seconds
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.data.kafka_bootstrap,
                "group.id": settings.data.kafka_group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": settings.data.kafka_session_timeout_ms,
                "enable.partition.eof": False,
            }
        )
        self._assigned = False
        self._partitions: set[int] = set()
        self._assigned_at = 0.0
        self._down_since: float | None = None
        self.consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    def describe(self) -> dict[str, str]:
        return {"kind": "kafka", "topic": self.topic}

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        position = self.committed()
        saved = position.offsets if isinstance(position, KafkaPosition) else {}
        for p in partitions:
            if p.partition in saved:
                p.offset = saved[p.partition]
        consumer.assign(partitions)
        self._assigned = True
        self._assigned_at = time.monotonic()
        self._partitions = {p.partition for p in partitions}
        log.info("assigned %s partitions %s", self.topic, sorted(self._partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._partitions -= {p.partition for p in partitions}
        log.info("revoked %s partitions %s", self.topic, sorted(p.partition for p in partitions))

    def batches(self, max_lines: int, follow: Follow | None = None) -> Iterator[Batch]:
        pending = _Pending()
        last = time.monotonic()
        deadline_assign = time.monotonic() + 30
        timeout = 0.5 if follow is None else min(0.5, follow.flush_seconds)
        while follow is None or not follow.stop.is_set():
            msgs = self.consumer.consume(num_messages=min(max_lines, 10_000), timeout=timeout)
            now = time.monotonic()
            got = False
            for m in msgs:
                err = m.error()
                if err is not None:
                    self._on_error(err)
                    continue
                self._down_since = None
                pending.add(m, now)
                got = True
            if got:
                last = now
            if pending.due(max_lines, follow, now, idle=not got):
                yield pending.batch()
                pending = _Pending()
            elif not got and follow is not None:
                yield Batch([], [], KafkaPosition())  # a heartbeat
            elif not got and self._done(now, last, deadline_assign):
                break
        if pending.lines:
            yield pending.batch()

    def _done(self, now: float, last: float, deadline_assign: float) -> bool:
        """A one-shot run ends once nothing arrived for `idle` seconds, unless it is still
        waiting for its partitions or for a broker that is down."""
        waiting_for_assignment = not self._assigned and now < deadline_assign
        down = self._down_since is not None and now - last < _BROKER_DOWN_SECONDS
        # idle counts from the assignment too: one that came late gets its first fetch
        quiet = now - max(last, self._assigned_at)
        return not (waiting_for_assignment or down) and quiet > self.idle

    def _on_error(self, err: KafkaError) -> None:
        """A broker that is down or restarting is waited for (librdkafka reconnects) for at
        most `_BROKER_DOWN_SECONDS`; any other error stops the run."""
        from confluent_kafka import KafkaError

        transient = (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT)
        if err.fatal() or err.code() not in transient:
            raise DataValidationError(f"Kafka error on {self.topic}: {err}")
        now = time.monotonic()
        self._down_since = self._down_since or now
        if now - self._down_since > _BROKER_DOWN_SECONDS:
            raise DataValidationError(f"Kafka broker down for {_BROKER_DOWN_SECONDS:.0f} s: {err}")
        log.warning("Kafka broker unavailable, waiting for it: %s", err)

    def commit(self, position: SourcePosition) -> None:
        """Tell the broker, after the pipeline's own state was committed: only the partitions
        this consumer still owns. The state is what a resumed run or a follower taking over a
        partition starts from, so a broker that cannot take the commit loses nothing."""
        from confluent_kafka import KafkaException, TopicPartition

        offsets = position.offsets if isinstance(position, KafkaPosition) else {}
        tps = [
            TopicPartition(self.topic, p, o) for p, o in offsets.items() if p in self._partitions
        ]
        if tps:
            try:
                self.consumer.commit(offsets=tps, asynchronous=False)
            except KafkaException as exc:  # a broker down, or a rebalance meanwhile
                log.warning("Kafka offsets not committed (the pipeline's state has them): %s", exc)

    def close(self) -> None:
        self.consumer.close()


class _Pending:
    """The lines read from Kafka and not yet handed out as a batch."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.positions: list[str] = []
        self.first: dict[int, int] = {}
        self.offsets: dict[int, int] = {}
        self.since = 0.0

    def add(self, m: Message, now: float) -> None:
        value = m.value() or b""
        partition, offset = m.partition(), m.offset()
        if not self.lines:
            self.since = now
        for raw in value.split(b"\n") if b"\n" in value.rstrip(b"\n") else [value]:
            self.lines.append(raw.rstrip(b"\n").decode("utf-8", errors="replace"))
            self.positions.append(f"{partition}:{offset}")
        if partition is not None and offset is not None:
            self.first.setdefault(partition, offset)
            self.offsets[partition] = offset + 1

    def due(self, max_lines: int, follow: Follow | None, now: float, idle: bool) -> bool:
        if len(self.lines) >= max_lines:
            return True
        if follow is None or not self.lines:
            return False
        return idle or now - self.since >= follow.flush_seconds

    def batch(self) -> Batch:
        return Batch(
            self.lines, self.positions, KafkaPosition(dict(self.offsets)), KafkaPosition(self.first)
        )


def unread(batch: Batch, committed: SourcePosition | None) -> Batch:
    """What of `batch` is past the committed position, with the position after both. Normally
    all of it; less when another follower committed some of these lines first (it took over a
    Kafka partition, or read the same file further), so that no line is committed twice."""
    if isinstance(batch.end, KafkaPosition):
        done = committed.offsets if isinstance(committed, KafkaPosition) else {}
        merged = {p: max(done.get(p, o), o) for p, o in batch.end.offsets.items()}
        end: SourcePosition = KafkaPosition(dict(sorted((done | merged).items())))
        starts = batch.start.offsets if isinstance(batch.start, KafkaPosition) else {}
        if all(o >= done.get(p, 0) for p, o in starts.items()):
            return Batch(batch.lines, batch.positions, end, batch.start)
        keep = [i for i, pos in enumerate(batch.positions) if _kafka_unread(pos, done)]
    else:
        saved = committed if isinstance(committed, FilePosition) else FilePosition()
        if saved.inode != batch.end.inode:
            return batch  # the file was replaced: the new one is read from its start
        end = FilePosition(max(saved.offset, batch.end.offset), batch.end.inode)
        start = batch.start.offset if isinstance(batch.start, FilePosition) else 0
        if start >= saved.offset:
            return Batch(batch.lines, batch.positions, end, batch.start)
        keep = [i for i, pos in enumerate(batch.positions) if int(pos) >= saved.offset]
    return Batch(
        [batch.lines[i] for i in keep], [batch.positions[i] for i in keep], end, batch.start
    )


def _kafka_unread(position: str, done: dict[int, int]) -> bool:
    """A line's "partition:offset" is past the partition's committed offset."""
    partition, offset = position.split(":")
    return int(offset) >= done.get(int(partition), 0)


def open_source(settings: Settings, spec: str, committed: Positions) -> FileSource | KafkaSource:
    """`kafka:TOPIC` or a file path (relative to the settings' home); `committed` returns
    the source's committed position in the pipeline's state."""
    if spec.startswith("kafka:"):
        return KafkaSource(settings, spec[len("kafka:") :], committed)
    return FileSource(settings.path(spec), committed)
