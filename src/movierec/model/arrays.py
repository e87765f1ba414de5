"""A saved model's arrays: one uncompressed `.npy` file each (`<prefix>.<name>.npy`), never
pickled, so that a reader can memory-map them (`np.load(..., mmap_mode="r")`) and processes
that load the same bundle share the pages."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

import numpy as np


def array_file(prefix: str, name: str) -> str:
    return f"{prefix}.{name}.npy"


def save_arrays(directory: Path, prefix: str, arrays: Mapping[str, np.ndarray]) -> list[str]:
    """Write each array; returns the file names."""
    names = []
    for name, values in arrays.items():
        file = array_file(prefix, name)
        np.save(directory / file, np.ascontiguousarray(values), allow_pickle=False)
        names.append(file)
    return names


def load_arrays(
    directory: Path, prefix: str, names: Iterable[str], mmap: bool = False
) -> dict[str, np.ndarray]:
    """The arrays `save_arrays` wrote; memory-mapped read-only with `mmap`, as plain arrays
    over the mapping (a `np.memmap`'s every slice pays the subclass's bookkeeping: a fold-in
    takes hundreds of slices)."""
    mode: Literal["r"] | None = "r" if mmap else None
    return {
        name: np.asarray(
            np.load(directory / array_file(prefix, name), mmap_mode=mode, allow_pickle=False)
        )
        for name in names
    }


def position(ids: memoryview, value: int) -> int:
    """Where `value` is in sorted `ids` (a view of an integer array), -1 when it is not.

    `bisect` on the view, not numpy's searchsorted, on the request path: searchsorted lets go
    of the GIL, and the request thread then queues again behind the worker's other threads to
    get it back (200 calls beside a thread spinning in Python: 26.6 ms against 0.2 ms).
    """
    pos = bisect_left(ids, value)
    return pos if pos < len(ids) and ids[pos] == value else -1
