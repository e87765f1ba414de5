"""The online store in Redis (`online_store=redis`, `online_store_redis_url`): for several
service replicas or machines, which cannot share a SQLite file.

A user's history is one hash, `movierec:history:<user_id>`, a field per movie holding
`first_ms,last_ms,max_minute,rating,rating_ms`. A Lua script merges a batch's rows of one user
into the hash with `data.history`'s rule, atomically on the server, so a batch written twice or
by several followers in any order leaves the same hash. Each write sets the key to expire after
the retention period (what SQLite's pruning does).

The change feed (`changes`, as SQLite's): the script also appends the user and their latest
event to the stream `movierec:changes` (ids grow in the order Redis runs the scripts; entries
older than `CHANGES_KEEP_SECONDS` are trimmed). A reader whose cursor may be older than a
trimmed entry reads every user's latest event from the hashes instead.

The client never retries and waits at most `timeout_ms`: Redis down is an
`OnlineStoreUnavailable("unreachable", ...)` at once, and the service answers from the
precomputed list.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from movierec.core.errors import OnlineStoreUnavailable
from movierec.data.events import ParsedBatch
from movierec.data.history import ROW_COLUMNS, Changes, Seen, history_rows
from movierec.data.sources import Batch

log = logging.getLogger(__name__)

KEY_PREFIX = "movierec:history:"
CHANGES_KEY = "movierec:changes"
CHANGES_KEEP_SECONDS = 3600
USERS_PER_ROUND_TRIP = 500
READ_AT_ONCE = 10_000  # stream entries or keys per round trip of a feed read

# KEYS[1]: a user's hash, KEYS[2]: the change stream; ARGV[1]: seconds to keep the hash,
# ARGV[2]: the user, ARGV[3]: milliseconds to keep changes; then 6 values per movie:
# movie, first_ms, last_ms, max_minute, rating, rating_ms
MERGE = """
local key = KEYS[1]
local latest = -1
for i = 4, #ARGV, 6 do
  if tonumber(ARGV[i + 2]) > latest then latest = tonumber(ARGV[i + 2]) end
  local f, l = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local m, r, rm = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])
  local old = redis.call('HGET', key, ARGV[i])
  if old then
    local of, ol, om, orr, orm = string.match(old, '^(%-?%d+),(%-?%d+),(%-?%d+),(%d+),(%d+)$')
    of, ol, om, orr, orm = tonumber(of), tonumber(ol), tonumber(om), tonumber(orr), tonumber(orm)
    if of < f then f = of end
    if ol > l then l = ol end
    if om > m then m = om end
    if orm > rm or (orm == rm and orr > r) then r, rm = orr, orm end
  end
  redis.call('HSET', key, ARGV[i], string.format('%d,%d,%d,%d,%d', f, l, m, r, rm))
end
redis.call('EXPIRE', key, ARGV[1])
local now = redis.call('TIME')
local oldest = tonumber(now[1]) * 1000 - tonumber(ARGV[3])
redis.call('XADD', KEYS[2], 'MINID', '~', oldest, '*', 'u', ARGV[2], 'l', latest)
return 1
"""


def user_key(user_id: int) -> str:
    return f"{KEY_PREFIX}{user_id}"


def parse_field(movie_id: str, value: str) -> Seen:
    first, last, minute, rating, rating_ms = (int(v) for v in value.split(","))
    return Seen(movie_id, first, last, minute, rating, rating_ms)


class RedisHistoryStore:
    """The Redis online store: `write_batch` for the DataPipeline, `history` for the service."""

    name = "online"

    def __init__(self, url: str, *, retention_days: float = 30.0, timeout_ms: float = 50.0):
        self.url = url
        self.ttl = max(1, int(retention_days * 86_400))
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_ms / 1000.0,
            socket_connect_timeout=timeout_ms / 1000.0,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self._merge = self.client.register_script(MERGE)

    def write_batch(self, source: str, batch: Batch, parsed: ParsedBatch) -> int:
        """Merge the batch's rows, a script call per user, pipelined; returns rows written."""
        rows = history_rows(parsed)
        try:
            for chunk in _by_user(rows, USERS_PER_ROUND_TRIP):
                pipe = self.client.pipeline(transaction=False)
                for user_id, args in chunk:
                    keys = [user_key(user_id), CHANGES_KEY]
                    head = [self.ttl, user_id, CHANGES_KEEP_SECONDS * 1000]
                    self._merge(keys=keys, args=[*head, *args], client=pipe)
                pipe.execute()
        except redis.RedisError as exc:
            raise redis_unavailable(self.url, exc) from None
        return len(rows)

    def history(self, user_id: int, since_ms: int) -> list[Seen]:
        try:
            fields: dict[str, str] = self.client.hgetall(user_key(user_id))  # type: ignore[assignment]
        except redis.RedisError as exc:
            raise redis_unavailable(self.url, exc) from None
        seen = (parse_field(movie, value) for movie, value in fields.items())
        return [s for s in seen if s.last_ms > since_ms]

    def changes(self, cursor: tuple[int, int] | None) -> Changes:
        """The users written after `cursor` (a stream id as (ms, seq)), as SQLite's feed."""
        try:
            info = self._stream_info()
            last = _stream_id(info.get("last-generated-id") or "0-0")
            if cursor is None or cursor > last or _trimmed_after(info, cursor, last):
                return Changes(last, self._every_user(), full=True)
            return Changes(last, self._changes_after(cursor, last), full=False)
        except redis.RedisError as exc:
            raise redis_unavailable(self.url, exc) from None

    def _stream_info(self) -> dict[str, Any]:
        try:
            return dict(self.client.xinfo_stream(CHANGES_KEY))
        except redis.ResponseError as exc:
            if "no such key" in str(exc).lower():
                return {}
            raise

    def _changes_after(self, cursor: tuple[int, int], last: tuple[int, int]) -> dict[int, int]:
        latest: dict[int, int] = {}
        start, end = f"({cursor[0]}-{cursor[1]}", f"{last[0]}-{last[1]}"
        while True:
            entries: list[tuple[str, dict[str, str]]] = self.client.xrange(  # type: ignore[assignment]
                CHANGES_KEY, start, end, count=READ_AT_ONCE
            )
            for _, fields in entries:
                user, ms = int(fields["u"]), int(fields["l"])
                latest[user] = max(ms, latest.get(user, -1))
            if len(entries) < READ_AT_ONCE:
                return latest
            start = f"({entries[-1][0]}"

    def _every_user(self) -> dict[int, int]:
        latest: dict[int, int] = {}
        keys: list[str] = []
        for key in self.client.scan_iter(match=f"{KEY_PREFIX}*", count=READ_AT_ONCE):
            keys.append(key)
            if len(keys) >= USERS_PER_ROUND_TRIP:
                latest.update(self._latest_of(keys))
                keys = []
        latest.update(self._latest_of(keys))
        return latest

    def _latest_of(self, keys: list[str]) -> dict[int, int]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hvals(key)
        out = {}
        for key, values in zip(keys, pipe.execute(), strict=True):
            if values:
                latest = max(parse_field("", v).last_ms for v in values)
                out[int(key[len(KEY_PREFIX) :])] = latest
        return out

    def close(self) -> None:
        self.client.close()


def _trimmed_after(info: dict[str, Any], cursor: tuple[int, int], last: tuple[int, int]) -> bool:
    """Whether entries after `cursor` may have been trimmed. Trimming cuts the stream's head,
    so none were if the oldest entry left is at or before the cursor, or nothing was ever
    trimmed; when in doubt (the cursor's own entry went too) the answer is yes: a full read."""
    if int(info.get("entries-added", 0)) <= int(info.get("length", 0)):
        return False
    first = info.get("first-entry")
    if not first:
        return last > cursor
    return _stream_id(first[0]) > cursor


def _stream_id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _by_user(rows: pd.DataFrame, size: int) -> Iterator[list[tuple[int, list[Any]]]]:
    """(user_id, flat script arguments) of every user in the rows, `size` users at a time."""
    chunk: list[tuple[int, list[Any]]] = []
    columns: Sequence[str] = ROW_COLUMNS[1:]
    for user_id, group in rows.groupby("user_id", sort=False):
        values = zip(*(group[c].tolist() for c in columns), strict=True)
        chunk.append((int(str(user_id)), [v for row in values for v in row]))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def redis_unavailable(url: str, exc: redis.RedisError) -> OnlineStoreUnavailable:
    where = url.split("@")[-1]  # never a password in a message
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return OnlineStoreUnavailable("unreachable", f"Redis at {where}: {exc}")
    return OnlineStoreUnavailable("error", f"Redis at {where}: {exc}")
