"""Parsing throughput: the event log turned into columns, against plain line reading of the
same file in the same run.

    .venv/bin/python evaluation/bench_parse.py [--lines 2000000]

The file is a real ml-100k replay (watch minutes and ratings) with recommendation lines mixed
in, repeated until it has the requested number of lines. Target: >= 300,000 lines/s on one
core for `parse_lines`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the target says


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=200_000)
    args = parser.parse_args()

    import pyarrow as pa

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    from movierec.core.settings import Settings
    from movierec.data.events import parse_lines
    from movierec.data.replay import replay

    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        s = Settings.from_env({}, home=Path(tmp), cache_dir=repo / ".cache", grouplens_url="")
        replay(s, "ml-100k", "events.log", end=0.5)
        base = (Path(tmp) / "events.log").read_text().splitlines()
        reco = (
            "2025-03-01T10:14:59,4821,recommendation request 10.0.0.5:8082, status 200, "
            "result: heat+1995, alien+1979, 42 ms"
        )
        base = [line if i % 50 else reco for i, line in enumerate(base)]
        path = Path(tmp) / "big.log"
        with open(path, "w") as f:
            written = 0
            while written < args.lines:
                chunk = base[: args.lines - written]
                f.write("\n".join(chunk) + "\n")
                written += len(chunk)
        size = path.stat().st_size

        t0 = time.perf_counter()
        n_read = 0
        with open(path, encoding="utf-8") as f:
            for _line in f:
                n_read += 1
        read_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        accepted = rejected = 0
        with open(path, encoding="utf-8") as f:
            while True:
                lines = f.readlines(args.batch * 64)
                if not lines:
                    break
                b = parse_lines(lines)
                accepted += b.accepted
                rejected += len(b.rejects)
        parse_s = time.perf_counter() - t0

    print(f"file: {n_read:,} lines, {size / 1e6:.0f} MB")
    print(f"plain line reading : {n_read / read_s:12,.0f} lines/s  ({read_s:.2f} s)")
    print(f"parse_lines columns: {n_read / parse_s:12,.0f} lines/s  ({parse_s:.2f} s)")
    print(
        f"parse / read speed : {read_s / parse_s:.3f}   target >= 300,000 lines/s: "
        f"{'met' if n_read / parse_s >= 300_000 else 'NOT met'}"
    )
    print(f"accepted {accepted:,}, rejected {rejected:,}")


if __name__ == "__main__":
    main()
