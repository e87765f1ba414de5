"""Replays: watches before each rating, time order, partial replays, determinism, and the
streamed replay's bytes equal to the whole-frame replay it replaced."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from movierec.core.files import sha256_bytes
from movierec.core.settings import Settings
from movierec.data.events import RateEvent, WatchEvent, parse_line, parse_lines
from movierec.data.replay import format_events, replay, replay_events

T = pd.Timestamp("2025-01-01T00:00:00Z")
OLD_ML100K_SHA256 = "e0bae751e023c0b4951f1b75b68be2c45cec672ca370eb95fd7ffb563b6322c4"


def _all_events(ratings: pd.DataFrame, **kw: object) -> pd.DataFrame:
    return pd.concat(list(replay_events(ratings, **kw)), ignore_index=True)  # type: ignore[arg-type]


def _one_by_one(
    ratings: pd.DataFrame, *, start: float, end: float, seed: int, mean_minutes: float
) -> list[str]:
    """The replay's lines made rating by rating, then sorted by (time, rating, watches before
    the rate, minute): the order the replay promises, written the plain way."""
    r = ratings.sort_values(["timestamp", "user_id", "movie_id"], kind="stable", ignore_index=True)
    rng = np.random.default_rng(seed)
    minutes = 1 + rng.poisson(mean_minutes * (0.4 + 0.2 * r["rating"].to_numpy(dtype=float)))
    lo, hi = round(start * len(r)), round(end * len(r))
    keyed = []
    columns = ["user_id", "movie_id", "rating", "timestamp"]
    for i, user, movie, rating, stamp in r.iloc[lo:hi][columns].itertuples():
        ts = stamp.tz_localize(None).floor("s")
        for k in range(minutes[i]):
            at = ts - pd.Timedelta(minutes=int(minutes[i] - k))
            keyed.append(((at, i, 0, k), f"{at.isoformat()},{user},GET /data/m/{movie}/{k}.mpg"))
        keyed.append(((ts, i, 1, 0), f"{ts.isoformat()},{user},GET /rate/{movie}={rating}"))
    return [line for _, line in sorted(keyed)]


def _dense_ratings(n: int, seed: int) -> pd.DataFrame:
    """Ratings packed into a few hours, many at the same second: watches of one chunk's
    ratings fall among the previous chunk's events."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "user_id": rng.integers(1, 40, n),
            "movie_id": [f"m+{i}" for i in rng.integers(0, 300, n)],
            "rating": rng.integers(1, 6, n).astype("int8"),
            "timestamp": T + pd.to_timedelta(rng.integers(0, 3600, n) // 7 * 7, unit="s"),
        }
    ).drop_duplicates(["user_id", "movie_id"], ignore_index=True)


@pytest.fixture
def ratings() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [1, 2, 1, 3, 2],
            "movie_id": ["heat+1995", "heat+1995", "alien+1979", "jaws+1975", "alien+1979"],
            "rating": pd.array([5, 1, 3, 4, 2], dtype="int8"),
            "timestamp": [T + pd.Timedelta(hours=h) for h in (5, 1, 9, 3, 7)],
        }
    )


def test_each_rating_is_preceded_by_its_minutes_in_time_order(ratings: pd.DataFrame) -> None:
    events = _all_events(ratings, start=0, end=1, seed=1, mean_minutes=8)
    lines = format_events(events)
    parsed = [parse_line(line) for line in lines]
    assert [e.ts for e in parsed] == sorted(e.ts for e in parsed)
    rates = [e for e in parsed if isinstance(e, RateEvent)]
    assert len(rates) == 5
    for rate in rates:
        watched = [
            e
            for e in parsed
            if isinstance(e, WatchEvent)
            and (e.user_id, e.movie_id) == (rate.user_id, rate.movie_id)
        ]
        assert watched, rate
        assert [w.minute for w in watched] == list(range(len(watched)))
        assert max(w.ts for w in watched) < rate.ts


def test_partial_replays_split_the_ratings_and_draw_the_same_minutes(
    ratings: pd.DataFrame,
) -> None:
    full = _all_events(ratings, start=0, end=1, seed=3, mean_minutes=8)
    a = _all_events(ratings, start=0, end=0.6, seed=3, mean_minutes=8)
    b = _all_events(ratings, start=0.6, end=1, seed=3, mean_minutes=8)
    assert (a["kind"] == "r").sum() == 3 and (b["kind"] == "r").sum() == 2
    joined = pd.concat([a, b]).sort_values(["ts", "user_id", "movie_id", "kind", "value"])
    expected = full.sort_values(["ts", "user_id", "movie_id", "kind", "value"])
    assert joined.reset_index(drop=True).equals(expected.reset_index(drop=True))
    again = _all_events(ratings, start=0, end=1, seed=3, mean_minutes=8)
    assert again.equals(full)


@pytest.mark.parametrize(("start", "end", "chunk"), [(0, 1, 37), (0, 1, 3), (0.3, 0.7, 20)])
def test_streamed_replay_writes_each_rating_s_lines_in_order(
    start: float, end: float, chunk: int
) -> None:
    ratings = _dense_ratings(500, seed=5)
    kw = {"start": start, "end": end, "seed": 9, "mean_minutes": 8.0}
    frames = list(replay_events(ratings, chunk=chunk, **kw))  # type: ignore[arg-type]
    assert len(frames) > 3  # it did stream
    streamed = [line for f in frames for line in format_events(f)]
    assert streamed == _one_by_one(ratings, **kw)  # type: ignore[arg-type]


@pytest.mark.slow
def test_real_ml100k_replay_parses_completely(ml100k_settings: Settings) -> None:
    out = "data/events.log"
    first = replay(ml100k_settings, "ml-100k", out, end=0.6, seed=42)
    second = replay(ml100k_settings, "ml-100k", out, start=0.6, end=1.0, seed=42)
    assert first.ratings + second.ratings == 99_693
    lines = Path(ml100k_settings.path(out)).read_text().splitlines()
    assert len(lines) == first.lines + second.lines
    batch = parse_lines(lines)
    assert batch.rejects == []
    assert len(batch.rates) == 99_693
    assert batch.rates["ts"].iloc[: first.ratings].is_monotonic_increasing
    # the same bytes as the replay that held every event in one frame (ca615aa), with the
    # same seed and minutes: the sha256 of its two files joined, computed with that code
    assert ml100k_settings.data.replay_mean_minutes == 8.0
    assert sha256_bytes(Path(ml100k_settings.path(out)).read_bytes()) == OLD_ML100K_SHA256
