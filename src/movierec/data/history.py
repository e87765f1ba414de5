"""A user's recent history as the online store keeps it: one row per (user, movie) they watched
or rated, merged by a rule that makes every write idempotent and order-free.

The DataPipeline gives the store each batch before it commits the batch, so the store can see a
batch twice; several followers write their batches in any order. Every field therefore merges
with a commutative, idempotent rule: the earliest first event, the latest last event, the
furthest minute watched, and the rating of the latest (time, rating) pair. Writing the same
events twice, or two batches in either order, leaves the same row.

Times are integer milliseconds since the epoch (UTC), exact in SQLite, Redis and Lua alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from movierec.data.events import ParsedBatch
from movierec.data.sources import Batch

ROW_COLUMNS = ("user_id", "movie_id", "first_ms", "last_ms", "max_minute", "rating", "rating_ms")
NOT_WATCHED = -1  # max_minute of a movie only rated
NOT_RATED = 0  # rating (and rating_ms) of a movie only watched


@dataclass(frozen=True, slots=True)
class Seen:
    """A movie in a user's recent history."""

    movie_id: str
    first_ms: int
    last_ms: int
    max_minute: int = NOT_WATCHED
    rating: int = NOT_RATED
    rating_ms: int = 0


class HistoryStore(Protocol):
    """An online store: an `EventSink` for the DataPipeline and a reader for the service."""

    name: str

    def write_batch(self, source: str, batch: Batch, parsed: ParsedBatch) -> int: ...

    def history(self, user_id: int, since_ms: int) -> list[Seen]:
        """The movies of `user_id` with an event after `since_ms`; `OnlineStoreUnavailable`
        when the store cannot answer."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Changes:
    """What a store's change feed says since a cursor: each user written and their latest event
    (`latest`: user_id -> last_ms). `full`: `latest` covers every user in the store (the first
    read, or the cursor was too old or of another file), not only those written since."""

    cursor: tuple[int, int]  # (the store file's identity, the last change read)
    latest: dict[int, int]
    full: bool


@runtime_checkable
class ChangeFeed(Protocol):
    """A store that says which users were written since a cursor, so that a reader can keep
    an index of who has events and ask the store only about them."""

    def changes(self, cursor: tuple[int, int] | None) -> Changes | None:
        """The changes after `cursor` (None: from the start); None when the store has no
        change feed (a file made before it); `OnlineStoreUnavailable` when it cannot answer."""
        ...


def merge(a: Seen, b: Seen) -> Seen:
    """The one merge rule (stores apply the same rule in SQL and Lua)."""
    rated = max((a.rating_ms, a.rating), (b.rating_ms, b.rating))
    return Seen(
        a.movie_id,
        min(a.first_ms, b.first_ms),
        max(a.last_ms, b.last_ms),
        max(a.max_minute, b.max_minute),
        rated[1],
        rated[0],
    )


def _ms(ts: pd.Series) -> np.ndarray:
    return ts.dt.tz_convert("UTC").astype("datetime64[ms, UTC]").astype("int64").to_numpy()


# Below this many events a batch is merged in Python: pandas' sort, group-by and join cost
# about 20 ms whatever the size, the whole of a follower's batch of a second's events.
SMALL_BATCH = 500


def history_rows(parsed: ParsedBatch) -> pd.DataFrame:
    """The batch's watches and rates as one merged row per (user, movie) (ROW_COLUMNS), in
    the order of each pair's first event, watches before rates."""
    w, r = parsed.watches, parsed.rates
    if len(w) + len(r) <= SMALL_BATCH:
        return _merged_in_python(parsed)
    watch_ms, rate_ms = _ms(w["ts"]), _ms(r["ts"])
    frames = [
        pd.DataFrame(
            {
                "user_id": w["user_id"].to_numpy(np.int64),
                "movie_id": w["movie_id"].astype(str).to_numpy(),
                "first_ms": watch_ms,
                "last_ms": watch_ms,
                "max_minute": w["minute"].to_numpy(np.int64),
                "rating": NOT_RATED,
                "rating_ms": 0,
            }
        ),
        pd.DataFrame(
            {
                "user_id": r["user_id"].to_numpy(np.int64),
                "movie_id": r["movie_id"].astype(str).to_numpy(),
                "first_ms": rate_ms,
                "last_ms": rate_ms,
                "max_minute": NOT_WATCHED,
                "rating": r["rating"].to_numpy(np.int64),
                "rating_ms": rate_ms,
            }
        ),
    ]
    rows = pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)
    if rows.empty:
        return rows.astype({c: "int64" for c in ROW_COLUMNS if c != "movie_id"})
    keys = ["user_id", "movie_id"]
    latest = rows.sort_values([*keys, "rating_ms", "rating"]).drop_duplicates(keys, keep="last")
    spans = rows.groupby(keys, sort=False).agg(
        first_ms=("first_ms", "min"), last_ms=("last_ms", "max"), max_minute=("max_minute", "max")
    )
    out = spans.join(latest.set_index(keys)[["rating", "rating_ms"]]).reset_index()
    return out[list(ROW_COLUMNS)].astype({c: "int64" for c in ROW_COLUMNS if c != "movie_id"})


def _merged_in_python(parsed: ParsedBatch) -> pd.DataFrame:
    """`history_rows` of a small batch, by `merge`: the same rows in the same order."""
    w, r = parsed.watches, parsed.rates
    merged: dict[tuple[int, str], Seen] = {}

    def add(user_id: int, seen: Seen) -> None:
        before = merged.get((user_id, seen.movie_id))
        merged[user_id, seen.movie_id] = seen if before is None else merge(before, seen)

    for user_id, movie_id, ms, minute in _columns(w, "minute"):
        add(user_id, Seen(movie_id, ms, ms, minute))
    for user_id, movie_id, ms, rating in _columns(r, "rating"):
        add(user_id, Seen(movie_id, ms, ms, NOT_WATCHED, rating, ms))
    rows = [
        (user_id, s.movie_id, s.first_ms, s.last_ms, s.max_minute, s.rating, s.rating_ms)
        for (user_id, _), s in merged.items()
    ]
    frame = pd.DataFrame.from_records(rows, columns=ROW_COLUMNS)
    return frame.astype({c: "int64" for c in ROW_COLUMNS if c != "movie_id"})


def _columns(events: pd.DataFrame, value: str) -> Iterator[tuple[int, str, int, int]]:
    """(user, movie, ms, `value`) of each event, as Python values."""
    return zip(
        events["user_id"].tolist(),
        events["movie_id"].astype(str).tolist(),
        _ms(events["ts"]).tolist(),
        events[value].tolist(),
        strict=True,
    )
