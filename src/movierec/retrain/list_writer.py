"""The bundle's precomputed lists, made as a map over partitions of the users.

Each task answers one partition (`model.recommend`) and returns it as arrays: the users, the
movies its lists name, and each user's top-k as positions into those movies - never a dict of
every user. In-process the task uses the model itself; on a LocalCluster it loads the saved
model from the bundle's folder, memory-mapped (the workers share the pages); on a remote
cluster the model is scattered. The parts become `recommendations.parquet` (a row group per
partition) and the arrays `registry.lists.PrecomputedLists` saves, as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from movierec.core.schema import RECOMMENDATIONS
from movierec.model.recommender import Recommender, load_recommender
from movierec.model.training.cluster import Engine
from movierec.registry.lists import PrecomputedLists

USER_BYTES = 64 * 1024  # what ranking one user holds at once (candidates x features), bounded
PARTS_PER_WORKER = 2  # at least this many partitions per worker slot, to balance them


@dataclass(frozen=True)
class ListPart:
    """One partition's lists: `items[r, j]` is a position into `movies`, -1 past the end."""

    users: np.ndarray
    movies: np.ndarray
    items: np.ndarray


@dataclass(frozen=True)
class SavedModel:
    """A model a task loads from its folder (memory-mapped) instead of receiving it."""

    folder: str
    threads: int


def write_lists(
    folder: Path, model: Recommender, users: np.ndarray, k: int, engine: Engine
) -> tuple[list[str], int]:
    """`recommendations.parquet` and the lists' arrays of `users` into `folder` (where the
    model is already saved: the tasks of a LocalCluster load it from there); returns the
    file names and the number of users with a list."""
    source: Any = model
    if engine.where == "local":
        source = SavedModel(str(folder), engine.task_threads)
    elif engine.where == "remote":
        source = engine.share(model)
    parts = engine.map(_part_lists, partitions(users, engine), source, k)
    return _write(folder, parts)


def partitions(users: np.ndarray, engine: Engine) -> list[np.ndarray]:
    """Slices of `users`: within a worker's budget, and enough to keep every worker busy."""
    if users.size == 0:
        return []
    size = engine.plan.partition_rows(USER_BYTES)
    if engine.where != "process":
        size = min(size, math.ceil(users.size / (engine.workers * PARTS_PER_WORKER)))
    return [users[a : a + size] for a in range(0, users.size, size)]


def _part_lists(users: np.ndarray, source: Recommender | SavedModel, k: int) -> ListPart:
    model = _loaded(source.folder, source.threads) if isinstance(source, SavedModel) else source
    lists = model.recommend(users, k)
    ids = np.array(list(lists), dtype=np.int64)
    movies = np.array(sorted({m for items in lists.values() for m in items}), dtype=str)
    width = max((len(v) for v in lists.values()), default=0)
    items = np.full((ids.size, width), -1, dtype=np.int32)
    for row, chosen in enumerate(lists.values()):
        items[row, : len(chosen)] = np.searchsorted(movies, np.asarray(chosen, dtype=str))
    return ListPart(ids, movies, items)


@lru_cache(maxsize=2)
def _loaded(folder: str, threads: int) -> Recommender:
    """The saved model, loaded once per worker process."""
    return load_recommender(Path(folder), mmap=True, threads=threads)


def _write(folder: Path, parts: list[ListPart]) -> tuple[list[str], int]:
    """The parts as `recommendations.parquet` and one `PrecomputedLists`: the file names and
    the user count."""
    schema = pa.schema([("user_id", pa.int64()), ("items", pa.string())])
    movies = np.unique(np.concatenate([p.movies for p in parts])) if parts else np.array([], str)
    width = max((p.items.shape[1] for p in parts), default=0)
    users, items = [], []
    with pq.ParquetWriter(folder / RECOMMENDATIONS, schema) as writer:
        for part in parts:
            labels = part.movies.astype(object)
            joined = [",".join(labels[row[row >= 0]]) for row in part.items]
            writer.write_table(pa.table({"user_id": part.users, "items": joined}, schema=schema))
            at = np.append(np.searchsorted(movies, part.movies), -1).astype(np.int32)
            wide = np.full((part.users.size, width), -1, dtype=np.int32)
            wide[:, : part.items.shape[1]] = at[part.items]  # -1 stays -1 (the appended end)
            users.append(part.users)
            items.append(wide)
    all_users = np.concatenate(users) if users else np.array([], dtype=np.int64)
    order = np.argsort(all_users, kind="stable")
    table = np.concatenate(items) if items else np.zeros((0, 0), dtype=np.int32)
    names = PrecomputedLists(all_users[order], table[order], movies).save(folder)
    return [RECOMMENDATIONS, *names], int(all_users.size)
