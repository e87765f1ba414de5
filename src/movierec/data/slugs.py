"""Movie ids as on the course's streaming site: `Godfather, The (1972)` -> `the+godfather+1972`."""

from __future__ import annotations

import re
import unicodedata

SLUG_PATTERN = r"[a-z0-9]+(?:\+[a-z0-9]+)*"
_SLUG_RE = re.compile(SLUG_PATTERN)
_ARTICLE_RE = re.compile(r"^(?P<rest>.+), (?P<article>The|A|An)$", re.IGNORECASE)
_OTHER_RE = re.compile(r"[^a-z0-9]+")
_YEAR_RE = re.compile(r"\s*\((?P<year>\d{4})\)\s*$")


def split_title_year(raw: str) -> tuple[str, int | None]:
    """`Heat (1995)` -> (`Heat`, 1995); a title without a trailing year gives None."""
    m = _YEAR_RE.search(raw)
    if not m:
        return raw.strip(), None
    return raw[: m.start()].strip(), int(m.group("year"))


def slugify(title: str, year: int | None) -> str:
    """Lower case, a trailing ", The"/", A"/", An" moved back to the front, runs of other
    characters turned into `+`, then the year. Accents are folded to ASCII first
    (`Café` -> `cafe`), so the slug keeps the letter rather than losing it."""
    t = title.strip()
    m = _ARTICLE_RE.match(t)
    if m:
        t = f"{m.group('article')} {m.group('rest')}"
    t = unicodedata.normalize("NFKD", t).encode("ascii", "ignore").decode("ascii").lower()
    parts = [p for p in _OTHER_RE.split(t) if p]
    if year is not None:
        parts.append(str(year))
    return "+".join(parts)


def is_slug(value: str) -> bool:
    """True when `value` is a well-formed slug (no empty runs, no leading or trailing `+`)."""
    return _SLUG_RE.fullmatch(value) is not None
