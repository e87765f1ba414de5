"""The event-log parser and writer: known lines, reasons, and the two parsers agreeing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from movierec.core.errors import DataValidationError
from movierec.data.events import (
    RateEvent,
    RecommendationEvent,
    WatchEvent,
    format_event,
    parse_line,
    parse_lines,
)

T = datetime(2025, 3, 1, 10, 15, 2, tzinfo=UTC)


def test_the_three_kinds_of_the_course_format() -> None:
    assert parse_line("2025-03-01T10:15:02,4821,GET /data/m/the+godfather+1972/17.mpg") == (
        WatchEvent(T, 4821, "the+godfather+1972", 17)
    )
    assert parse_line("2025-03-01T10:15:02.250Z,4821,GET /rate/the+godfather+1972=4\n") == (
        RateEvent(T.replace(microsecond=250_000), 4821, "the+godfather+1972", 4)
    )
    line = (
        "2025-03-01T10:15:02,4821,recommendation request 10.0.0.5:8082, status 200, "
        "result: heat+1995, alien+1979, 42 ms"
    )
    assert parse_line(line) == RecommendationEvent(
        T, 4821, "10.0.0.5:8082", 200, ("heat+1995", "alien+1979"), 42
    )


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("", "empty line"),
        ("garbage", "not 'time,user,request'"),
        ("2025-03-01T10:15:02,abc,GET /rate/heat+1995=4", "user id 'abc'"),
        ("2025-03-01T10:15:02,-1,GET /rate/heat+1995=4", "user id '-1'"),
        ("2025-03-01T10:15:02,1,GET /rate/heat+1995=7", "rating '7'"),
        ("2025-03-01T10:15:02,1,GET /rate/The Godfather=4", "bad movie id"),
        ("2025-03-01T10:15:02,1,GET /data/m/heat+1995/-3.mpg", "minute '-3'"),
        ("2025-02-30T10:15:02,1,GET /rate/heat+1995=4", "bad time"),
        ("1925-03-01T10:15:02,1,GET /rate/heat+1995=4", "out of range"),
        ("2025-03-01T10:15:02,1,GET /foo", "unknown request"),
        (
            "2025-03-01T10:15:02,1,recommendation request h:1, status 2000, result: a+1, 4 ms",
            "status",
        ),
    ],
)
def test_bad_lines_say_why(line: str, reason: str) -> None:
    with pytest.raises(DataValidationError, match=reason.replace("(", r"\(")):
        parse_line(line)
    batch = parse_lines([line])
    assert batch.accepted == 0
    assert len(batch.rejects) == 1 and reason.split("'")[0] in batch.rejects[0].reason


def test_bulk_columns_and_line_numbers() -> None:
    lines = [
        "2025-03-01T10:15:02,7,GET /data/m/heat+1995/0.mpg",
        "nonsense",
        "2025-03-01T10:15:03,7,GET /rate/heat+1995=5",
        "2025-03-01T10:15:04,7,recommendation request s:1, status 200, result: a+1, b+2, 9 ms",
    ]
    b = parse_lines(lines)
    assert b.watches[["user_id", "movie_id", "minute", "line_no"]].values.tolist() == [
        [7, "heat+1995", 0, 0]
    ]
    assert b.rates["line_no"].tolist() == [2] and b.rates["rating"].tolist() == [5]
    assert b.recommendations["items"].tolist() == ["a+1,b+2"]
    assert [r.line_no for r in b.rejects] == [1]
    assert str(b.watches["ts"].dt.tz) == "UTC"


slugs = st.from_regex(r"[a-z0-9]{1,6}(\+[a-z0-9]{1,6}){0,3}", fullmatch=True)
times = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
).map(lambda t: t.replace(microsecond=(t.microsecond // 1000) * 1000))
events = st.one_of(
    st.builds(WatchEvent, times, st.integers(0, 10**9), slugs, st.integers(0, 99_999)),
    st.builds(RateEvent, times, st.integers(0, 10**9), slugs, st.integers(1, 5)),
    st.builds(
        RecommendationEvent,
        times,
        st.integers(0, 10**9),
        st.from_regex(r"[a-z0-9.:]{1,20}", fullmatch=True),
        st.integers(100, 599),
        st.lists(slugs, max_size=5).map(tuple),
        st.integers(0, 10**6),
    ),
)


@settings(max_examples=300, deadline=None)
@given(events)
def test_format_then_parse_round_trips(event: WatchEvent | RateEvent | RecommendationEvent) -> None:
    assert parse_line(format_event(event)) == event


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            events.map(format_event),
            st.text(max_size=80),
            events.map(format_event).map(lambda s: s[: len(s) // 2]),
            events.map(format_event).map(lambda s: s.replace(",", ", ", 1)),
            events.map(format_event).map(lambda s: s.replace("+", " ", 1)),
        ),
        max_size=30,
    )
)
def test_bulk_and_single_line_parsers_accept_exactly_the_same_lines(lines: list[str]) -> None:
    lines = [s.replace("\n", " ").replace("\r", " ") for s in lines]
    batch = parse_lines(lines)
    rejected = {r.line_no for r in batch.rejects}
    for i, line in enumerate(lines):
        try:
            parse_line(line)
            ok = True
        except DataValidationError:
            ok = False
        assert ok == (i not in rejected), line
    assert batch.accepted + len(rejected) == len(lines)
    assert all("please report" not in r.reason for r in batch.rejects)
