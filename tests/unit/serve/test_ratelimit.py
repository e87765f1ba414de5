"""The per-client rate limiter (GCRA)."""

from __future__ import annotations

import pytest

from movierec.serve.ratelimit import RateLimiter


def test_the_rate_limit_refills_at_its_rate_per_client(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("movierec.serve.ratelimit.time.monotonic", lambda: clock[0])
    limiter = RateLimiter(6)  # a burst of 6, then one every 10 s
    assert [limiter.allow("a") for _ in range(7)] == [True] * 6 + [False]
    assert limiter.allow("b")  # clients are counted apart
    clock[0] += 9.9
    assert not limiter.allow("a")
    clock[0] += 0.2
    assert limiter.allow("a") and not limiter.allow("a")
    clock[0] += 60
    assert [limiter.allow("a") for _ in range(7)] == [True] * 6 + [False]


def test_the_rate_limit_forgets_idle_clients_and_keeps_active_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("movierec.serve.ratelimit.time.monotonic", lambda: clock[0])
    monkeypatch.setattr("movierec.serve.ratelimit._PRUNE_AT", 3)
    limiter = RateLimiter(6)
    for client in "abcd":  # the fourth client triggers a pass: all four are active, all stay
        limiter.allow(client)
    assert set(limiter.tat) == set("abcd") and limiter.prune_at == 8
    clock[0] += 60  # every bucket is full again
    for client in "efghijklm":
        limiter.allow(client)
    assert "a" not in limiter.tat and "m" in limiter.tat
