"""The streaming site's event log (the course format): parse, validate, write.

    2025-03-01T10:15:02,4821,GET /data/m/the+godfather+1972/17.mpg      (one minute watched)
    2025-03-01T10:16:40,4821,GET /rate/the+godfather+1972=4             (a rating)
    2025-03-01T10:14:59,4821,recommendation request 10.0.0.5:8082, status 200, result:
        heat+1995, alien+1979, 42 ms                                   (one line in the log)

Times are ISO 8601 in UTC, with or without fractional seconds and a trailing `Z`.

Two parsers accept exactly the same lines: `parse_line` (one line -> an event, or
`DataValidationError` with the reason) and `parse_lines` (many lines -> columns), the fast path
of the DataPipeline. `parse_lines` matches every line at once with Arrow's vectorized regular
expressions and casts the columns in bulk; only the lines it rejects go through `parse_line`,
to get their reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from movierec.core.errors import DataValidationError
from movierec.data.slugs import SLUG_PATTERN, is_slug

MAX_USER_ID = 2**53
MAX_MINUTE = 100_000
MIN_YEAR, MAX_YEAR = 1970, 2100

_TS = r"(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?)Z?"
_USER = r"(?P<user>\d{1,16})"
_MOVIE = rf"(?P<movie>{SLUG_PATTERN})"
WATCH_RE = rf"^{_TS},{_USER},GET /data/m/{_MOVIE}/(?P<minute>\d{{1,6}})\.mpg$"
RATE_RE = rf"^{_TS},{_USER},GET /rate/{_MOVIE}=(?P<rating>[1-5])$"
RECO_RE = (
    rf"^{_TS},{_USER},recommendation request (?P<server>[^,\s]+), status (?P<status>\d{{3}}), "
    r"result: (?P<items>[^\n]*?), (?P<latency>\d{1,9}) ms$"
)

_LINE = re.compile(r"^(?P<ts>[^,]*),(?P<user>[^,]*),(?P<rest>.*)$", re.DOTALL)
_WATCH_REST = re.compile(r"^GET /data/m/(?P<movie>[^/]*)/(?P<minute>[^/]*)\.mpg$")
_RATE_REST = re.compile(r"^GET /rate/(?P<movie>[^=]*)=(?P<rating>.*)$")
_RECO_REST = re.compile(
    r"^recommendation request (?P<server>[^,]*), status (?P<status>[^,]*), "
    r"result: (?P<items>.*), (?P<latency>[^,]*) ms$",
    re.DOTALL,
)
_SERVER_RE = re.compile(r"[^,\s]+")
_TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z?$")


@dataclass(frozen=True, slots=True)
class WatchEvent:
    ts: datetime
    user_id: int
    movie_id: str
    minute: int


@dataclass(frozen=True, slots=True)
class RateEvent:
    ts: datetime
    user_id: int
    movie_id: str
    rating: int


@dataclass(frozen=True, slots=True)
class RecommendationEvent:
    ts: datetime
    user_id: int
    server: str
    status: int
    items: tuple[str, ...]
    latency_ms: int


Event = WatchEvent | RateEvent | RecommendationEvent


@dataclass(frozen=True, slots=True)
class Reject:
    line_no: int
    line: str
    reason: str


@dataclass
class ParsedBatch:
    """Columns of the accepted events; `line_no` is the index in the input sequence."""

    watches: pd.DataFrame
    rates: pd.DataFrame
    recommendations: pd.DataFrame
    rejects: list[Reject]

    @property
    def accepted(self) -> int:
        return len(self.watches) + len(self.rates) + len(self.recommendations)


# ---- one line -------------------------------------------------------------------------------


def _bad(reason: str) -> DataValidationError:
    return DataValidationError(reason)


def parse_ts(raw: str) -> datetime:
    """An ISO 8601 UTC time of the log, validated."""
    if not _TS_RE.match(raw):
        raise _bad(f"bad time {raw[:40]!r}")
    text = raw.removesuffix("Z")
    if "." in text:  # fromisoformat takes at most 6 fractional digits
        head, frac = text.split(".")
        text = f"{head}.{frac[:6].ljust(6, '0')}"
    try:
        ts = datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        raise _bad(f"bad time {raw[:40]!r}") from None
    if not MIN_YEAR <= ts.year <= MAX_YEAR:
        raise _bad(f"time {raw[:40]!r} out of range {MIN_YEAR}..{MAX_YEAR}")
    return ts


def _user(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 16 or int(raw) >= MAX_USER_ID:
        raise _bad(f"user id {raw[:40]!r} is not a non-negative integer")
    return int(raw)


def _movie(raw: str) -> str:
    if not is_slug(raw):
        raise _bad(f"bad movie id {raw[:60]!r}")
    return raw


def _int(raw: str, what: str, lo: int, hi: int, digits: tuple[int, int] = (1, 9)) -> int:
    """A decimal integer of `digits` ASCII digits within lo..hi (as the bulk regexes accept)."""
    if (
        not raw.isascii()
        or not raw.isdigit()
        or not digits[0] <= len(raw) <= digits[1]
        or not lo <= int(raw) <= hi
    ):
        raise _bad(f"{what} {raw[:20]!r} not an integer in {lo}..{hi}")
    return int(raw)


def parse_line(line: str) -> Event:
    """One event from one log line (with or without its newline)."""
    line = line.rstrip("\r\n")
    m = _LINE.match(line)
    if not m:
        raise _bad("not 'time,user,request'" if line else "empty line")
    ts, user, rest = parse_ts(m["ts"]), _user(m["user"]), m["rest"]
    if rest.startswith("GET /data/m/"):
        w = _WATCH_REST.match(rest)
        if not w:
            raise _bad(f"malformed watch request {rest[:60]!r}")
        minute = _int(w["minute"], "minute", 0, MAX_MINUTE - 1, (1, 6))
        return WatchEvent(ts, user, _movie(w["movie"]), minute)
    if rest.startswith("GET /rate/"):
        r = _RATE_REST.match(rest)
        if not r:
            raise _bad(f"malformed rate request {rest[:60]!r}")
        return RateEvent(ts, user, _movie(r["movie"]), _int(r["rating"], "rating", 1, 5, (1, 1)))
    if rest.startswith("recommendation request "):
        c = _RECO_REST.match(rest)
        if not c:
            raise _bad(f"malformed recommendation line {rest[:60]!r}")
        if not _SERVER_RE.fullmatch(c["server"]):
            raise _bad(f"bad server {c['server'][:40]!r}")
        status = _int(c["status"], "status", 100, 599, (3, 3))
        items = tuple(_movie(i) for i in c["items"].split(", ")) if c["items"] else ()
        if "\n" in c["items"]:
            raise _bad("newline inside the result")
        latency = _int(c["latency"], "latency", 0, 999_999_999)
        return RecommendationEvent(ts, user, c["server"], status, items, latency)
    raise _bad(f"unknown request {rest[:60]!r}")


# ---- writing --------------------------------------------------------------------------------


def format_ts(ts: datetime) -> str:
    """UTC, second precision unless the time has milliseconds."""
    ts = ts.astimezone(UTC) if ts.tzinfo else ts
    if ts.microsecond:
        return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}"
    return ts.strftime("%Y-%m-%dT%H:%M:%S")


def format_watch(ts: datetime, user_id: int, movie_id: str, minute: int) -> str:
    return f"{format_ts(ts)},{user_id},GET /data/m/{movie_id}/{minute}.mpg"


def format_rate(ts: datetime, user_id: int, movie_id: str, rating: int) -> str:
    return f"{format_ts(ts)},{user_id},GET /rate/{movie_id}={rating}"


def format_recommendation(
    ts: datetime,
    user_id: int,
    server: str,
    status: int,
    items: Sequence[str],
    latency_ms: int,
) -> str:
    return (
        f"{format_ts(ts)},{user_id},recommendation request {server}, status {status}, "
        f"result: {', '.join(items)}, {latency_ms} ms"
    )


def format_event(event: Event) -> str:
    if isinstance(event, WatchEvent):
        return format_watch(event.ts, event.user_id, event.movie_id, event.minute)
    if isinstance(event, RateEvent):
        return format_rate(event.ts, event.user_id, event.movie_id, event.rating)
    return format_recommendation(
        event.ts, event.user_id, event.server, event.status, event.items, event.latency_ms
    )


# ---- many lines, fast -----------------------------------------------------------------------

_EMPTY = {
    "watches": {
        "ts": "datetime64[us, UTC]",
        "user_id": "int64",
        "movie_id": "str",
        "minute": "int32",
    },
    "rates": {"ts": "datetime64[us, UTC]", "user_id": "int64", "movie_id": "str", "rating": "int8"},
    "recommendations": {
        "ts": "datetime64[us, UTC]",
        "user_id": "int64",
        "status": "int16",
        "items": "str",
        "latency_ms": "int64",
    },
}


_EMPTY_FRAMES: dict[str, pd.DataFrame] = {}


def _empty(kind: str) -> pd.DataFrame:
    """A kind's frame with no rows, made once and copied (a follower's batch of a second's
    watches needs two: making them cost 4 ms, more than the rest of the parse)."""
    frame = _EMPTY_FRAMES.get(kind)
    if frame is None:
        cols = {c: pd.Series(dtype=t) for c, t in _EMPTY[kind].items()}
        cols["line_no"] = pd.Series(dtype="int64")
        frame = _EMPTY_FRAMES[kind] = pd.DataFrame(cols)
    return frame.copy()


def _timestamps(raw: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Bulk-cast ISO times; returns the times and a mask of the ones that are valid."""
    try:
        ts = pc.cast(raw, pa.timestamp("us"))
        years = pc.year(ts).to_numpy(zero_copy_only=False)
        ok = (years >= MIN_YEAR) & (years <= MAX_YEAR)
        return ts, ok
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # a day 31 of February or such: find the offenders one by one (rare)
        ok = np.zeros(len(raw), dtype=bool)
        values: list[datetime | None] = []
        for i, s in enumerate(raw.to_pylist()):
            try:
                values.append(parse_ts(s).replace(tzinfo=None))
                ok[i] = True
            except DataValidationError:
                values.append(None)
        return pa.array(values, type=pa.timestamp("us")), ok


def _extract(arr: pa.Array, pattern: str) -> tuple[pa.StructArray, np.ndarray]:
    """Regex groups of every line; `matched` marks the lines of this kind."""
    groups = pc.extract_regex(arr, pattern)
    matched = groups.is_valid().to_numpy(zero_copy_only=False)
    return groups, matched


def parse_lines(lines: Sequence[str]) -> ParsedBatch:
    """Columns of every accepted event, and the reason for every rejected line."""
    n = len(lines)
    if n == 0:
        return ParsedBatch(_empty("watches"), _empty("rates"), _empty("recommendations"), [])
    arr = pa.array(lines, type=pa.large_string())
    arr = pc.utf8_rtrim(arr, characters="\r\n")
    accepted = np.zeros(n, dtype=bool)
    frames: dict[str, pd.DataFrame] = {}
    for kind, pattern in (("watches", WATCH_RE), ("rates", RATE_RE), ("recommendations", RECO_RE)):
        groups, matched = _extract(arr, pattern)
        idx = np.flatnonzero(matched)
        if idx.size == 0:
            frames[kind] = _empty(kind)
            continue
        sub = groups.filter(pa.array(matched))
        ts, ts_ok = _timestamps(sub.field("ts"))
        user = pc.cast(sub.field("user"), pa.int64())
        ok = ts_ok & (user.to_numpy() < MAX_USER_ID)
        cols: dict[str, object] = {
            "ts": pc.assume_timezone(ts, "UTC"),
            "user_id": user,
        }
        if kind == "watches":
            minute = pc.cast(sub.field("minute"), pa.int32())
            ok &= minute.to_numpy() < MAX_MINUTE
            cols["movie_id"] = sub.field("movie")
            cols["minute"] = minute
        elif kind == "rates":
            cols["movie_id"] = sub.field("movie")
            cols["rating"] = pc.cast(sub.field("rating"), pa.int8())
        else:
            status = pc.cast(sub.field("status"), pa.int16()).to_numpy()
            ok &= (status >= 100) & (status <= 599)
            items = sub.field("items").to_pylist()
            ok &= np.fromiter((_items_ok(s) for s in items), dtype=bool, count=len(items))
            cols["status"] = pa.array(status)
            cols["items"] = pa.array([s.replace(", ", ",") for s in items], type=pa.string())
            cols["latency_ms"] = pc.cast(sub.field("latency"), pa.int64())
        cols["line_no"] = pa.array(idx, type=pa.int64())
        table = pa.table(cols).filter(pa.array(ok))
        frame = table.to_pandas()
        frames[kind] = frame
        accepted[idx[ok]] = True
    rejects = []
    for i in np.flatnonzero(~accepted).tolist():
        line = lines[i]
        try:
            parse_line(line)
        except DataValidationError as exc:
            rejects.append(Reject(i, line, str(exc)))
            continue
        # the fast path is stricter than the reference parser: never silently lose the line
        rejects.append(Reject(i, line, "rejected by the bulk parser (please report)"))
    return ParsedBatch(frames["watches"], frames["rates"], frames["recommendations"], rejects)


def _items_ok(items: str) -> bool:
    return items == "" or all(is_slug(i) for i in items.split(", "))
