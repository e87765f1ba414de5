"""Progress of long jobs: a tqdm bar on a terminal; a plain log line every `every` seconds and
one at the end when the output is not a terminal (cron, CI, a log file).

    with Progress("ingest", total=n_lines, unit="lines") as bar:
        for batch in batches:
            ...
            bar.update(len(batch))

`track(iterable, ...)` wraps an iterable the same way.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TypeVar

from tqdm import tqdm

log = logging.getLogger(__name__)

T = TypeVar("T")


def interactive() -> bool:
    """True when progress goes to a terminal (a bar), False for logs (plain lines)."""
    return sys.stderr.isatty()


class Progress:
    """A bar on a terminal, periodic log lines elsewhere."""

    def __init__(
        self,
        desc: str,
        total: float | None = None,
        unit: str = "it",
        every: float = 10.0,
        bar: bool | None = None,
    ):
        self.desc, self.total, self.unit, self.every = desc, total, unit, every
        self.done = 0.0
        self._start = self._last = time.monotonic()
        self._bar: tqdm | None = None
        if interactive() if bar is None else bar:
            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)

    def update(self, n: float = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            log.info("%s", self.line())

    def line(self) -> str:
        """`desc: 40% (4,000/10,000 lines, 812/s, 5 s)`."""
        seconds = time.monotonic() - self._start
        rate = self.done / seconds if seconds > 0 else 0.0
        share = f"{100 * self.done / self.total:.0f}% " if self.total else ""
        of = f"/{self.total:,.0f}" if self.total else ""
        return (
            f"{self.desc}: {share}({self.done:,.0f}{of} {self.unit}, {rate:,.0f}/s, "
            f"{seconds:.0f} s)"
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        log.info("%s done", self.line())

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def track(
    items: Iterable[T], desc: str, total: float | None = None, unit: str = "it"
) -> Iterator[T]:
    """Yield `items`, reporting progress as they go."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(desc, total, unit) as bar:
        for item in items:
            yield item
            bar.update()
