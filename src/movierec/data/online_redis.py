"""The online store in Redis (`online_store=redis`, `online_store_redis_url`): for several
service replicas or machines, which cannot share a SQLite file.

A user's history is one hash, `movierec:history:<user_id>`, a field per movie holding
`first_ms,last_ms,max_minute,rating,rating_ms`. A Lua script merges a batch's rows of one user
into the hash with `data.history`'s rule, atomically on the server, so a batch written twice or
by several followers in any order leaves the same hash. Each write sets the key to expire after
the retention period (what SQLite's pruning does).

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
from movierec.data.history import ROW_COLUMNS, Seen, history_rows
from movierec.data.sources import Batch

log = logging.getLogger(__name__)

KEY_PREFIX = "movierec:history:"
USERS_PER_ROUND_TRIP = 500

# KEYS[1]: a user's hash; ARGV[1]: seconds to keep it; then 6 values per movie:
# movie, first_ms, last_ms, max_minute, rating, rating_ms
MERGE = """
local key = KEYS[1]
for i = 2, #ARGV, 6 do
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
                    self._merge(keys=[user_key(user_id)], args=[self.ttl, *args], client=pipe)
                pipe.execute()
        except redis.RedisError as exc:
            raise _unavailable(self.url, exc) from None
        return len(rows)

    def history(self, user_id: int, since_ms: int) -> list[Seen]:
        try:
            fields: dict[str, str] = self.client.hgetall(user_key(user_id))  # type: ignore[assignment]
        except redis.RedisError as exc:
            raise _unavailable(self.url, exc) from None
        seen = (parse_field(movie, value) for movie, value in fields.items())
        return [s for s in seen if s.last_ms > since_ms]

    def close(self) -> None:
        self.client.close()


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


def _unavailable(url: str, exc: redis.RedisError) -> OnlineStoreUnavailable:
    where = url.split("@")[-1]  # never a password in a message
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return OnlineStoreUnavailable("unreachable", f"Redis at {where}: {exc}")
    return OnlineStoreUnavailable("error", f"Redis at {where}: {exc}")
