"""Rate limiting per client: at most `per_minute` requests in any minute."""

from __future__ import annotations

import threading
import time

_PRUNE_AT = 100_000


class RateLimiter:
    """At most `per_minute` requests per client in any minute, per worker (GCRA, the virtual
    scheduling form of a token bucket): per client only its theoretical arrival time, so the
    cost per request is a dictionary lookup however high the limit."""

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
