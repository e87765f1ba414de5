"""What a bundle carries for the service besides the model: the precomputed lists, as
uncompressed `.npy` arrays (`model.arrays`) that every gunicorn worker memory-maps: the pages
are shared, and a worker's memory does not grow with the number of users.

- `lists.users.npy` (sorted user ids), `lists.items.npy` (users x k positions into
  `lists.movies.npy`, -1 past the end of a short list): the top-k of every user the trainer
  knew, as `recommendations.parquet` has them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from movierec.model.arrays import array_file, load_arrays, position, save_arrays

LISTS = "lists"
LIST_ARRAYS = ("users", "items", "movies")


@dataclass(frozen=True)
class PrecomputedLists:
    """Every known user's list; `get` answers one user with a search and a join."""

    users: np.ndarray
    items: np.ndarray
    movies: np.ndarray
    # the movie ids as Python strings, made once: a request joins them without numpy's
    # string arrays (a memory-mapped array's views also cost a subclass's bookkeeping each)
    _names: list[str] = field(init=False, repr=False, compare=False)
    # a view of the (shared) user ids, searched by `arrays.position`
    _user_ids: memoryview = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_names", self.movies.tolist())
        object.__setattr__(self, "_user_ids", np.ascontiguousarray(self.users).data)

    @classmethod
    def build(cls, lists: Mapping[int, Sequence[str]]) -> PrecomputedLists:
        users = np.array(sorted(lists), dtype=np.int64)
        movies = np.array(sorted({m for items in lists.values() for m in items}), dtype=str)
        k = max((len(v) for v in lists.values()), default=0)
        items = np.full((users.size, k), -1, dtype=np.int32)
        for row, user in enumerate(users.tolist()):
            chosen = lists[user]
            items[row, : len(chosen)] = np.searchsorted(movies, np.asarray(chosen, dtype=str))
        return cls(users, items, movies)

    def save(self, directory: Path) -> list[str]:
        return save_arrays(
            directory, LISTS, {"users": self.users, "items": self.items, "movies": self.movies}
        )

    @classmethod
    def load(cls, directory: Path, mmap: bool = True) -> PrecomputedLists:
        arrays = load_arrays(directory, LISTS, LIST_ARRAYS, mmap)
        return cls(arrays["users"], arrays["items"], arrays["movies"])

    @staticmethod
    def saved_in(directory: Path) -> bool:
        return all((directory / array_file(LISTS, n)).exists() for n in LIST_ARRAYS)

    def row(self, user_id: int) -> int:
        """The user's row, -1 when the trainer did not know them."""
        return position(self._user_ids, user_id)

    def get(self, user_id: int) -> list[str] | None:
        row = self.row(user_id)
        if row < 0:
            return None
        names = self._names
        return [names[i] for i in self.items.view(np.ndarray)[row].tolist() if i >= 0]

    def __len__(self) -> int:
        return int(self.users.size)
