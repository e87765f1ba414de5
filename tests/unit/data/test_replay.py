"""Replays: watches before each rating, time order, partial replays, determinism."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from movierec.core.settings import Settings
from movierec.data.events import RateEvent, WatchEvent, parse_line, parse_lines
from movierec.data.replay import format_events, replay, replay_events

T = pd.Timestamp("2025-01-01T00:00:00Z")


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
    events = replay_events(ratings, start=0, end=1, seed=1, mean_minutes=8)
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
    full = replay_events(ratings, start=0, end=1, seed=3, mean_minutes=8)
    a = replay_events(ratings, start=0, end=0.6, seed=3, mean_minutes=8)
    b = replay_events(ratings, start=0.6, end=1, seed=3, mean_minutes=8)
    assert (a["kind"] == "r").sum() == 3 and (b["kind"] == "r").sum() == 2
    joined = pd.concat([a, b]).sort_values(["ts", "user_id", "movie_id", "kind", "value"])
    expected = full.sort_values(["ts", "user_id", "movie_id", "kind", "value"])
    assert joined.reset_index(drop=True).equals(expected.reset_index(drop=True))
    again = replay_events(ratings, start=0, end=1, seed=3, mean_minutes=8)
    assert again.equals(full)


@pytest.mark.slow
def test_real_ml100k_replay_parses_completely(ml100k_settings: Settings) -> None:
    out = "data/events.log"
    first = replay(ml100k_settings, "ml-100k", out, end=0.6)
    second = replay(ml100k_settings, "ml-100k", out, start=0.6, end=1.0)
    assert first.ratings + second.ratings == 99_693
    lines = Path(ml100k_settings.path(out)).read_text().splitlines()
    assert len(lines) == first.lines + second.lines
    batch = parse_lines(lines)
    assert batch.rejects == []
    assert len(batch.rates) == 99_693
    assert batch.rates["ts"].iloc[: first.ratings].is_monotonic_increasing
