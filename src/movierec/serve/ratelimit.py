"""Rate limiting per client: at most `per_minute` requests in any minute.

Two kinds, chosen by `MOVIEREC_RATE_LIMIT_STORAGE`:
- empty (default): `RateLimiter`, in the worker's memory. Each gunicorn worker, and each
  replica, counts on its own, so a client can get up to (workers x replicas) x the limit.
  In the compose stack nginx's `limit_req` is the shared limit in front of them.
- a Redis URL: `SharedRateLimiter`, a moving window kept in Redis by the `limits` library,
  one count per client for every worker and replica that names the same Redis. If Redis
  cannot be reached the request is let through (a broken limiter must not take the service
  down), counted in `movierec_rate_limit_errors_total` and logged.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from movierec.serve.metrics import RATE_LIMIT_ERRORS

log = logging.getLogger(__name__)

_PRUNE_AT = 100_000
_REDIS_TIMEOUT = 0.25  # seconds: a slow Redis costs a request at most this, then it passes
_WARN_EVERY = 10.0


class Limiter(Protocol):
    scope: str

    def allow(self, client: str) -> bool: ...


class RateLimiter:
    """At most `per_minute` requests per client in any minute, per worker (GCRA, the virtual
    scheduling form of a token bucket): per client only its theoretical arrival time, so the
    cost per request is a dictionary lookup however high the limit."""

    scope = "per worker"

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self.interval = 60.0 / per_minute if per_minute > 0 else 0.0
        self.tolerance = 60.0 - self.interval  # a burst of per_minute, then per_minute/60 s
        self.tat: dict[str, float] = {}
        self.prune_at = _PRUNE_AT
        self.lock = threading.Lock()

    def allow(self, client: str) -> bool:
        if self.per_minute <= 0:
            return True
        now = time.monotonic()
        with self.lock:
            tat = max(self.tat.get(client, now), now)
            if tat - now > self.tolerance:
                return False
            self.tat[client] = tat + self.interval
            if len(self.tat) > self.prune_at:  # forget clients whose bucket is full again
                self.tat = {k: v for k, v in self.tat.items() if v > now}
                # many clients all active: the next pass waits until they double (amortized)
                self.prune_at = max(_PRUNE_AT, 2 * len(self.tat))
            return True


class SharedRateLimiter:
    """At most `per_minute` requests per client in any moving minute, counted in Redis."""

    scope = "shared (redis)"

    def __init__(self, per_minute: int, url: str):
        self.item = RateLimitItemPerMinute(per_minute)
        storage = storage_from_string(
            url, socket_timeout=_REDIS_TIMEOUT, socket_connect_timeout=_REDIS_TIMEOUT
        )
        self.limiter = MovingWindowRateLimiter(storage)
        self._warned = 0.0

    def allow(self, client: str) -> bool:
        try:
            return bool(self.limiter.hit(self.item, "movierec", client))
        except Exception as exc:  # any Redis failure: let the request through, count it
            RATE_LIMIT_ERRORS.inc()
            now = time.monotonic()
            if now - self._warned > _WARN_EVERY:
                self._warned = now
                log.warning("rate-limit storage failed, letting requests through: %s", exc)
            return True


def make_limiter(per_minute: int, storage: str) -> Limiter:
    """The limiter the settings ask for (no limit at all when `per_minute` is 0)."""
    if per_minute > 0 and storage:
        return SharedRateLimiter(per_minute, storage)
    return RateLimiter(per_minute)
