"""Replay real MovieLens ratings as the streaming site's event log (`movierec replay`).

Each rating becomes a rate line, preceded by the watch lines of that movie: one line per minute
watched, one minute apart, ending a minute before the rating. How long a user watched is
drawn once per rating from the seed (1 + Poisson, longer for higher ratings: mean about
`replay_mean_minutes` for a 3), so a replay is reproducible, and a partial replay
(`--start 0.6 --end 0.8` after `--end 0.6`) draws the same minutes as the full one. The ratings
are taken in time order; `--start`/`--end` are fractions of them, so a partial replay leaves
later data for later retrains. The events of a replay are written in time order, made and
written a chunk of ratings at a time, so memory does not grow with the number of lines.

Output: a file (appended, so successive replays grow one log) or a Kafka topic (`kafka:TOPIC`,
keyed by user id so that each user's events stay in order).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from movierec.core.errors import DataValidationError
from movierec.core.progress import Progress
from movierec.core.settings import Settings
from movierec.data.movielens import fetch, load_tables

if TYPE_CHECKING:  # an optional dependency, imported when replaying to Kafka
    from confluent_kafka import KafkaError, Message, Producer

log = logging.getLogger(__name__)

RATINGS_PER_CHUNK = 50_000  # ml-1m: about 550,000 lines per chunk


@dataclass
class ReplayResult:
    dataset: str
    out: str
    ratings: int
    lines: int
    first_ts: str | None
    last_ts: str | None

    def summary(self) -> dict[str, object]:
        return self.__dict__.copy()


@dataclass(frozen=True)
class LineChunk:
    """Consecutive lines of a log in time order (UTF-8, each ending with a newline), with each
    line's user (Kafka's key)."""

    text: bytes
    users: np.ndarray

    @classmethod
    def of(cls, lines: list[str], users: np.ndarray) -> LineChunk:
        return cls(("\n".join(lines) + "\n").encode() if lines else b"", users)

    def lines(self) -> list[str]:
        return self.text.decode().split("\n")[:-1]


def replay_events(
    ratings: pd.DataFrame,
    *,
    start: float,
    end: float,
    seed: int,
    mean_minutes: float,
    chunk: int = RATINGS_PER_CHUNK,
) -> Iterator[pd.DataFrame]:
    """The event rows (ts, user_id, movie_id, kind 'w'/'r', value: minute or rating), in time
    order, for the ratings between fractions `start` and `end` of the time-ordered ratings;
    in frames of about `chunk` ratings' events, so memory does not grow with the replay.

    A rating's watches start before it, so a chunk's events can come before the end of the
    previous chunk's: a chunk's events are held back until no later rating can start before
    them (the suffix minimum of the ratings' first-watch times)."""
    if not 0.0 <= start < end <= 1.0:
        raise DataValidationError(f"need 0 <= start < end <= 1, got start={start}, end={end}")
    r = ratings.sort_values(["timestamp", "user_id", "movie_id"], kind="stable", ignore_index=True)
    n = len(r)
    rng = np.random.default_rng(seed)
    scale = mean_minutes * (0.4 + 0.2 * r["rating"].to_numpy(dtype=float))
    minutes_all = 1 + rng.poisson(scale)
    lo, hi = round(start * n), round(end * n)
    part = r.iloc[lo:hi]
    minutes = minutes_all[lo:hi]
    rate_ts = part["timestamp"].to_numpy("datetime64[s]")
    first_watch = rate_ts - minutes.astype("timedelta64[m]")
    # the earliest event of any rating from i on
    floor = np.minimum.accumulate(first_watch[::-1])[::-1]
    held: pd.DataFrame | None = None
    for a in range(0, len(part), chunk):
        b = min(a + chunk, len(part))
        events = _chunk_events(part.iloc[a:b], minutes[a:b], rate_ts[a:b], a)
        if held is not None:
            events = pd.concat([held, events], ignore_index=True)
        # time order; at equal times a rating's own watches come before it
        events = events.sort_values(["ts", "order", "kind", "value"], ignore_index=True)
        ready = len(events) if b == len(part) else int(np.searchsorted(events["ts"], floor[b]))
        held = events.iloc[ready:]
        if ready:
            yield events.iloc[:ready].drop(columns="order")


def _chunk_events(
    part: pd.DataFrame, minutes: np.ndarray, rate_ts: np.ndarray, offset: int
) -> pd.DataFrame:
    """The events of some ratings (unordered); `order` is the rating's index in the replay."""
    users = part["user_id"].to_numpy()
    movies = part["movie_id"].to_numpy()
    # watch k of a rating with m minutes happens (m - k) minutes before the rating
    rep = np.repeat(np.arange(len(part)), minutes)
    first = np.repeat(np.cumsum(minutes) - minutes, minutes)
    k = np.arange(rep.size) - first
    watch_ts = rate_ts[rep] - (minutes[rep] - k).astype("timedelta64[m]")
    return pd.DataFrame(
        {
            "ts": np.concatenate([watch_ts, rate_ts]),
            "user_id": np.concatenate([users[rep], users]),
            "movie_id": np.concatenate([movies[rep], movies]),
            "kind": np.concatenate([np.full(rep.size, "w"), np.full(len(part), "r")]),
            "value": np.concatenate([k, part["rating"].to_numpy(dtype=np.int64)]),
            "order": offset + np.concatenate([rep, np.arange(len(part))]),
        }
    )


def format_events(events: pd.DataFrame) -> list[str]:
    """Course-format lines of replay rows (second-precision times)."""
    ts = pd.Series(events["ts"].to_numpy("datetime64[s]")).dt.strftime("%Y-%m-%dT%H:%M:%S")
    head = ts + "," + events["user_id"].astype(str)
    is_watch = events["kind"].to_numpy() == "w"
    movie = events["movie_id"].astype(str)
    value = events["value"].astype(str)
    watch = head + ",GET /data/m/" + movie + "/" + value + ".mpg"
    rate = head + ",GET /rate/" + movie + "=" + value
    return watch.where(is_watch, rate).tolist()


def replay(
    settings: Settings,
    dataset: str,
    out: str,
    *,
    start: float = 0.0,
    end: float = 1.0,
    seed: int | None = None,
) -> ReplayResult:
    """Write the ratings between `start` and `end` as events to `out` (path or kafka:TOPIC)."""

    fetch(settings, dataset)
    ratings = load_tables(settings, dataset).ratings
    frames = replay_events(
        ratings,
        start=start,
        end=end,
        seed=settings.training.seed if seed is None else seed,
        mean_minutes=settings.data.replay_mean_minutes,
    )
    result = ReplayResult(dataset, out, 0, 0, None, None)

    def chunks() -> Iterator[LineChunk]:
        for events in frames:
            result.ratings += int((events["kind"] == "r").sum())
            result.first_ts = result.first_ts or str(events["ts"].iloc[0])
            result.last_ts = str(events["ts"].iloc[-1])
            yield LineChunk.of(format_events(events), events["user_id"].to_numpy())

    result.lines = write_lines(settings, out, chunks())
    log.info("replayed %d ratings as %d lines to %s", result.ratings, result.lines, out)
    return result


def write_lines(settings: Settings, out: str, chunks: Iterable[LineChunk]) -> int:
    """Append the lines to `out` (a path or kafka:TOPIC), chunk by chunk; returns their count."""
    if out.startswith("kafka:"):
        return _to_kafka(settings, out[len("kafka:") :], chunks)
    path = settings.path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "ab") as f, Progress(f"replay to {out}", unit="lines") as bar:
        for chunk in chunks:
            f.write(chunk.text)
            n += len(chunk.users)
            bar.update(len(chunk.users))
    return n


def kafka_producer(settings: Settings) -> Producer:
    """A confluent_kafka Producer for `settings.data.kafka_bootstrap` (idempotent, acks=all)."""
    from confluent_kafka import Producer

    return Producer(
        {
            "bootstrap.servers": settings.data.kafka_bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "queue.buffering.max.messages": 1_000_000,
        }
    )


def _to_kafka(settings: Settings, topic: str, chunks: Iterable[LineChunk]) -> int:
    producer = kafka_producer(settings)
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(str(err))

    n = 0
    with Progress(f"replay to kafka:{topic}", unit="lines") as bar:
        for chunk in chunks:
            for line, user in zip(chunk.lines(), chunk.users, strict=True):
                _produce(producer, topic, line.encode(), str(user).encode(), on_delivery)
            n += len(chunk.users)
            bar.update(len(chunk.users))
    left = producer.flush(60)
    if errors or left:
        raise DataValidationError(
            f"Kafka replay to {topic}: {len(errors)} delivery errors, {left} undelivered "
            f"({errors[:3]})"
        )
    return n


def _produce(
    producer: Producer,
    topic: str,
    value: bytes,
    key: bytes,
    on_delivery: Callable[[KafkaError | None, Message], None],
) -> None:
    while True:
        try:
            producer.produce(topic, value, key=key, on_delivery=on_delivery)
            break
        except BufferError:
            producer.poll(0.1)
    producer.poll(0)
