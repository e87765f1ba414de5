"""What every online store must do (SQLite in the unit tests, Redis in the integration tests):
the same rows whatever the order or repetition of the batches, read back per user after a time."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pandas as pd

from movierec.core.settings import Settings
from movierec.data.events import format_rate, format_watch, parse_lines
from movierec.data.history import HistoryStore, Seen, history_rows
from movierec.data.positions import FilePosition
from movierec.data.sources import Batch

T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


def event_lines(seed: int, n: int, users: int = 30, movies: int = 40) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ts = T0 + timedelta(seconds=rng.randrange(86_400), milliseconds=rng.randrange(1000))
        user, movie = rng.randrange(users), f"movie+{rng.randrange(movies)}+1999"
        if rng.random() < 0.8:
            out.append(format_watch(ts, user, movie, rng.randrange(120)))
        else:
            out.append(format_rate(ts, user, movie, rng.randint(1, 5)))
        if i % 50 == 0:
            out.append(f"broken line {i}")
    return out


def write(store: HistoryStore, lines: list[str]) -> int:
    batch = Batch(lines, [str(i) for i in range(len(lines))], FilePosition(len(lines), 1))
    return store.write_batch("test", batch, parse_lines(lines))


def expected(lines: list[str], since_ms: int = 0) -> dict[int, set[Seen]]:
    rows = history_rows(parse_lines(lines))
    out: dict[int, set[Seen]] = {}
    for r in rows.itertuples(index=False):
        if r.last_ms > since_ms:
            seen = Seen(r.movie_id, r.first_ms, r.last_ms, r.max_minute, r.rating, r.rating_ms)
            out.setdefault(int(r.user_id), set()).add(seen)
    return out


def stored(store: HistoryStore, users: int = 31, since_ms: int = 0) -> dict[int, set[Seen]]:
    out = {u: set(store.history(u, since_ms)) for u in range(users)}
    return {u: s for u, s in out.items() if s}


def check_contract(open_store: Callable[[str], HistoryStore]) -> None:
    """`open_store(name)` gives an empty store; two are used."""
    a, b, c = event_lines(1, 600), event_lines(2, 600), event_lines(3, 300)
    everything = a + b + c
    first = open_store("first")
    for lines in (a, b, a, c, b):  # batches seen twice, as after a crash before the commit
        write(first, lines)
    second = open_store("second")
    for lines in (c, b, a):
        write(second, lines)
    want = expected(everything)
    assert stored(first) == want
    assert stored(second) == want
    middle = int((T0 + timedelta(hours=12)).timestamp() * 1000)
    assert stored(first, since_ms=middle) == expected(everything, since_ms=middle)
    assert first.history(10**12, 0) == []
    first.close()
    second.close()


def store_rows(settings: Settings) -> pd.DataFrame:
    """Every row of a home's SQLite online store, in key order (without the write time)."""
    with sqlite3.connect(settings.online_store_file) as conn:
        rows = pd.read_sql("SELECT * FROM history ORDER BY user_id, movie_id", conn)
    return rows.drop(columns="written_ms")
