"""The online store's row merge: a known answer for one batch, and the rule's algebra (the same
rows whatever the order or repetition of the batches)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import reduce
from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st

from movierec.data import history
from movierec.data.events import format_rate, format_watch, parse_lines
from movierec.data.history import NOT_RATED, NOT_WATCHED, Seen, history_rows, merge

T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def test_one_batch_becomes_one_row_per_user_and_movie() -> None:
    heat, alien = "heat+1995", "alien+1979"
    lines = [
        format_watch(T0, 7, heat, 1),
        format_watch(T0 + timedelta(minutes=1), 7, heat, 2),
        format_watch(T0 + timedelta(minutes=2, milliseconds=500), 7, heat, 3),
        format_rate(T0 + timedelta(minutes=5), 7, heat, 4),
        format_rate(T0 + timedelta(minutes=9), 7, heat, 2),  # the later rating wins
        format_rate(T0 + timedelta(minutes=1), 8, alien, 5),
    ]
    rows = history_rows(parse_lines(lines)).sort_values("user_id", ignore_index=True)
    assert rows.to_dict("records") == [
        {
            "user_id": 7,
            "movie_id": heat,
            "first_ms": _ms(T0),
            "last_ms": _ms(T0 + timedelta(minutes=9)),
            "max_minute": 3,
            "rating": 2,
            "rating_ms": _ms(T0 + timedelta(minutes=9)),
        },
        {
            "user_id": 8,
            "movie_id": alien,
            "first_ms": _ms(T0 + timedelta(minutes=1)),
            "last_ms": _ms(T0 + timedelta(minutes=1)),
            "max_minute": NOT_WATCHED,
            "rating": 5,
            "rating_ms": _ms(T0 + timedelta(minutes=1)),
        },
    ]


def test_an_empty_batch_has_no_rows() -> None:
    assert history_rows(parse_lines([])).empty
    assert history_rows(parse_lines(["garbage"])).empty


_seen = st.builds(
    lambda f, span, minute, rating, rms: Seen(
        "m", f, f + span, minute, rating, rms if rating else 0
    ),
    st.integers(0, 10**12),
    st.integers(0, 10**6),
    st.integers(NOT_WATCHED, 300),
    st.integers(NOT_RATED, 5),
    st.integers(0, 10**12),
)


@settings(deadline=None)
@given(st.lists(_seen, min_size=1, max_size=6), st.randoms())
def test_the_merge_ignores_order_and_repetition(rows: list[Seen], rnd) -> None:  # type: ignore[no-untyped-def]
    once = reduce(merge, rows)
    shuffled = rows + rows[: rnd.randrange(len(rows) + 1)]
    rnd.shuffle(shuffled)
    assert reduce(merge, shuffled) == once
    assert merge(once, once) == once


_event = st.tuples(
    st.booleans(),  # a watch, else a rate
    st.integers(0, 600),  # seconds after T0
    st.integers(1, 4),  # user
    st.sampled_from(["heat+1995", "alien+1979", "up+2009"]),
    st.integers(0, 200),  # minute
    st.integers(1, 5),  # rating
)


# checks of equal results, not of speed: a loaded machine must not fail them
@settings(deadline=None)
@given(st.lists(_event, max_size=30))
def test_a_small_batch_merged_in_python_is_what_pandas_makes(
    events: list[tuple[bool, int, int, str, int, int]],
) -> None:
    lines = [
        format_watch(T0 + timedelta(seconds=s), u, m, minute)
        if watch
        else format_rate(T0 + timedelta(seconds=s), u, m, rating)
        for watch, s, u, m, minute, rating in events
    ]
    parsed = parse_lines(lines)
    small = history_rows(parsed)
    with patch.object(history, "SMALL_BATCH", -1):  # every batch through pandas
        large = history_rows(parsed)
    assert small.dtypes.to_dict() == large.dtypes.to_dict()
    assert small.to_dict("records") == large.to_dict("records")
