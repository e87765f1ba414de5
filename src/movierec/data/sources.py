"""Where event lines come from: a file tailed from a saved offset, or a Kafka topic.

Both yield batches of decoded lines with the position just after the batch, and never move a
committed position themselves: the DataPipeline commits a position only after the data read
up to it is durably written (the file offset in its state; Kafka offsets in its state first,
then on the broker).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from movierec.core.errors import DataNotFoundError, DataValidationError
from movierec.core.settings import Settings

log = logging.getLogger(__name__)

_BLOCK = 8 << 20
_BROKER_DOWN_SECONDS = 30.0  # a Kafka broker restarting is waited for this long


@dataclass
class Batch:
    lines: list[str]
    positions: list[str]  # where each line came from: "offset" or "partition:offset"
    end: dict[str, Any]  # the source position after this batch (what to save)


@dataclass
class FileSource:
    """Complete lines of a file from byte `offset` on; a partial last line waits for the
    next run. The file's inode and size are checked so that a replaced or truncated file is
    noticed instead of being read from a wrong offset."""

    path: Path
    position: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"kind": "file", "path": str(self.path)}

    def batches(self, max_lines: int) -> Iterator[Batch]:
        if not self.path.exists():
            raise DataNotFoundError(f"event source {self.path} does not exist")
        st = os.stat(self.path)
        offset = int(self.position.get("offset", 0))
        if self.position and (self.position.get("inode") != st.st_ino or st.st_size < offset):
            log.warning(
                "%s was replaced or truncated (saved offset %d, size %d): reading from the start",
                self.path,
                offset,
                st.st_size,
            )
            offset = 0
        with open(self.path, "rb") as f:
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
                        yield Batch(lines, positions, self._end(pos, st.st_ino))
                        lines, positions = [], []
            if lines:
                yield Batch(lines, positions, self._end(pos, st.st_ino))

    def _end(self, offset: int, inode: int) -> dict[str, Any]:
        return {"offset": offset, "inode": inode}

    def commit(self, position: dict[str, Any]) -> None:
        """Nothing to tell a file: the pipeline's state holds the offset."""

    def close(self) -> None:
        pass


class KafkaSource:
    """A topic read by a consumer group, from the offsets saved in the pipeline's state
    (else the group's committed offsets, else the beginning). Reads until no message arrived
    for `idle_seconds`."""

    def __init__(
        self, settings: Settings, topic: str, position: dict[str, Any], idle_seconds: float = 3.0
    ):
        from confluent_kafka import Consumer

        self.topic = topic
        self.saved = {int(p): int(o) for p, o in position.get("offsets", {}).items()}
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
        self._down_since: float | None = None
        self.consumer.subscribe([topic], on_assign=self._on_assign)

    def describe(self) -> dict[str, Any]:
        return {"kind": "kafka", "topic": self.topic}

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        for p in partitions:
            if p.partition in self.saved:
                p.offset = self.saved[p.partition]
        consumer.assign(partitions)
        self._assigned = True

    def batches(self, max_lines: int) -> Iterator[Batch]:
        offsets = dict(self.saved)
        lines: list[str] = []
        positions: list[str] = []
        last = time.monotonic()
        deadline_assign = time.monotonic() + 30
        while True:
            msgs = self.consumer.consume(num_messages=min(max_lines, 10_000), timeout=0.5)
            if not msgs:
                waiting_for_assignment = not self._assigned and time.monotonic() < deadline_assign
                down = self._down_since is not None
                waiting_for_broker = down and time.monotonic() - last < _BROKER_DOWN_SECONDS
                if waiting_for_assignment or waiting_for_broker:
                    continue
                if time.monotonic() - last > self.idle:
                    break
                continue
            last = time.monotonic()
            for m in msgs:
                if m.error():
                    self._on_error(m.error())
                    continue
                self._down_since = None
                value = m.value() or b""
                for raw in value.split(b"\n") if b"\n" in value.rstrip(b"\n") else [value]:
                    lines.append(raw.rstrip(b"\n").decode("utf-8", errors="replace"))
                    positions.append(f"{m.partition()}:{m.offset()}")
                partition, offset = m.partition(), m.offset()
                if partition is not None and offset is not None:
                    offsets[partition] = offset + 1
            if len(lines) >= max_lines:
                yield Batch(lines, positions, {"offsets": {str(k): v for k, v in offsets.items()}})
                lines, positions = [], []
        if lines:
            yield Batch(lines, positions, {"offsets": {str(k): v for k, v in offsets.items()}})

    def _on_error(self, err: Any) -> None:
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

    def commit(self, position: dict[str, Any]) -> None:
        """Tell the broker, after the pipeline's own state was committed. The state is what a
        resumed run starts from, so a broker that cannot take the commit loses nothing."""
        from confluent_kafka import KafkaException, TopicPartition

        tps = [TopicPartition(self.topic, int(p), int(o)) for p, o in position["offsets"].items()]
        if tps:
            try:
                self.consumer.commit(offsets=tps, asynchronous=False)
            except KafkaException as exc:
                log.warning("Kafka offsets not committed (the pipeline's state has them): %s", exc)

    def close(self) -> None:
        self.consumer.close()


def open_source(
    settings: Settings, spec: str, position: dict[str, Any]
) -> FileSource | KafkaSource:
    """`kafka:TOPIC` or a file path (relative to the settings' home)."""
    if spec.startswith("kafka:"):
        return KafkaSource(settings, spec[len("kafka:") :], position)
    return FileSource(settings.path(spec), position)
