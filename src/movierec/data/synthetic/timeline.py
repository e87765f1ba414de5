"""The synthetic site's events a time bucket at a time, in time order, as course-format text."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from movierec.data.synthetic.population import RECO_ITEMS, RECO_POOL, SERVERS, Look, Plan


@dataclass
class Events:
    """Events as columns; `kind` 0 recommendation, 1 watch, 2 rate; `value` the packed
    `Look`, the minute or the rating."""

    ts: np.ndarray
    user: np.ndarray
    movie: np.ndarray
    kind: np.ndarray
    value: np.ndarray
    hit: np.ndarray

    def take(self, index: np.ndarray) -> Events:
        return Events(*(getattr(self, f)[index] for f in EVENT_FIELDS))

    @staticmethod
    def join(a: Events, b: Events) -> Events:
        return Events(*(np.concatenate([getattr(a, f), getattr(b, f)]) for f in EVENT_FIELDS))


EVENT_FIELDS = ("ts", "user", "movie", "kind", "value", "hit")


def _expand(rec: np.ndarray) -> Events:
    """The lines of some interactions: a recommendation, the watch minutes, the rating."""
    m = rec["minutes"].astype(np.int64)
    rep = np.repeat(np.arange(rec.size), m)
    minute = np.arange(rep.size) - np.repeat(np.cumsum(m) - m, m)
    reco, rated = rec[rec["reco"]], rec[rec["rated"]]
    parts = [
        (reco["first"], reco["user"], reco["movie"], 0, reco["look"], reco["hit"]),
        (rec["start"][rep] + 60 * minute, rec["user"][rep], rec["movie"][rep], 1, minute, False),
        (
            rated["start"] + 60 * rated["minutes"],
            rated["user"],
            rated["movie"],
            2,
            rated["rating"],
            False,
        ),
    ]
    cols = []
    for i in range(6):
        cols.append(np.concatenate([np.broadcast_to(p[i], p[0].shape) for p in parts]))
    return Events(
        cols[0].astype(np.int64),
        cols[1].astype(np.int64),
        cols[2].astype(np.int64),
        cols[3].astype(np.int8),
        cols[4].astype(np.int64),
        cols[5].astype(bool),
    )


def _in_order(plan: Plan, ev: Events) -> Events:
    """Time order; at one time by user, then movie (the tables' order of slugs), then a
    recommendation before the watches before the rating."""
    rank = plan.catalog.slug_rank[ev.movie]
    return ev.take(np.lexsort((ev.value, ev.kind, rank, ev.user, ev.ts)))


def bucket_events(plan: Plan, files: list[tuple[Path, np.ndarray]]) -> Iterator[Events]:
    """Each time bucket's events in time order; those past the bucket's end wait for the next
    (no later interaction starts before it)."""
    held: Events | None = None
    for b in range(plan.buckets):
        parts = [np.load(path, mmap_mode="r")[at[b] : at[b + 1]] for path, at in files]
        ev = _expand(np.concatenate(parts))
        ev = _in_order(plan, ev if held is None else Events.join(held, ev))
        end = plan.t0 + (b + 1) * plan.bucket_seconds
        ready = ev.ts.size if b == plan.buckets - 1 else int(np.searchsorted(ev.ts, end))
        held = ev.take(np.arange(ready, ev.ts.size))
        yield ev.take(np.arange(ready))


def text_of(plan: Plan, ev: Events) -> bytes:
    """The course-format lines of some events in order, each ending with a newline."""
    slugs = plan.catalog.slugs
    kinds = [np.flatnonzero(ev.kind == k) for k in (0, 1, 2)]
    watch, rate = kinds[1], kinds[2]
    tails = [
        _recommendation_tails(plan, ev.take(kinds[0])),
        _join(["GET /data/m/", slugs.take(ev.movie[watch]), "/", _str(ev.value[watch]), ".mpg\n"]),
        _join(["GET /rate/", slugs.take(ev.movie[rate]), "=", _str(ev.value[rate]), "\n"]),
    ]
    where = np.empty(ev.ts.size, dtype=np.int64)
    where[np.concatenate(kinds)] = np.arange(ev.ts.size)
    tail = pa.concat_arrays(tails).take(pa.array(where))
    # Arrow's cast writes `2025-01-01 00:00:21`, 70 times faster than its strftime
    when = pc.cast(pa.array(ev.ts.astype("datetime64[s]")), pa.string())
    when = pc.replace_substring(when, " ", "T", max_replacements=1)
    lines = pc.binary_join_element_wise(when, _str(ev.user), tail, ",")
    return _bytes_of(lines)


def _recommendation_tails(plan: Plan, reco: Events) -> pa.Array:
    """`recommendation request SERVER, status 200, result: A, B, ..., 42 ms`."""
    lists, look = _lists(plan, reco)
    server = pa.array(np.asarray(SERVERS, dtype=object)[look.server], pa.string())
    return _join(
        ["recommendation request ", server, ", status 200, result: ",
         pc.binary_join(lists, ", "), ", ", _str(look.latency), " ms\n"]
    )  # fmt: skip


def _lists(plan: Plan, reco: Events) -> tuple[pa.ListArray, Look]:
    """20 distinct popular movies per list, the one then watched put in when it is a hit."""
    n, k = reco.ts.size, RECO_ITEMS
    look = Look.unpack(reco.value)
    pool = np.argsort(-np.diff(plan.catalog.cdf, prepend=0.0), kind="stable")[:RECO_POOL]
    items = pool[(look.at[:, None] + look.step[:, None] * np.arange(k)) % len(pool)]
    missing = reco.hit & ~(items == reco.movie[:, None]).any(axis=1)
    items[missing, look.slot[missing]] = reco.movie[missing]
    lists = pa.ListArray.from_arrays(
        pa.array(np.arange(n + 1) * k, pa.int32()), plan.catalog.slugs.take(items.ravel())
    )
    return lists, look


def lake_parts(plan: Plan, ev: Events) -> dict[str, pa.Table]:
    """The events as the DataPipeline's parts hold them (`events.parse_lines`' columns)."""
    slugs = plan.catalog.slugs
    w, r, c = (np.flatnonzero(ev.kind == k) for k in (1, 2, 0))
    lists, look = _lists(plan, ev.take(c))
    return {
        "watches": pa.table(
            {"ts": utc(ev.ts[w]), "user_id": ev.user[w], "movie_id": slugs.take(ev.movie[w]),
             "minute": ev.value[w].astype(np.int32)}
        ),
        "rates": pa.table(
            {"ts": utc(ev.ts[r]), "user_id": ev.user[r], "movie_id": slugs.take(ev.movie[r]),
             "rating": ev.value[r].astype(np.int8)}
        ),
        "recommendations": pa.table(
            {"ts": utc(ev.ts[c]), "user_id": ev.user[c],
             "status": np.full(c.size, 200, dtype=np.int16), "items": pc.binary_join(lists, ","),
             "latency_ms": look.latency}
        ),
    }  # fmt: skip


def utc(seconds: np.ndarray) -> pa.Array:
    return pa.array(seconds * 1_000_000, pa.timestamp("us", tz="UTC"))


def _join(parts: list[Any]) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _str(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def _bytes_of(lines: pa.Array) -> bytes:
    """The characters of a string array, every line one after the other."""
    if len(lines) == 0:
        return b""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset :]
    return bytes(memoryview(lines.buffers()[2])[offsets[0] : offsets[len(lines)]])
