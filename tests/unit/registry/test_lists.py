"""The service's lists in a bundle: memory-mapped and answered by a search and a join."""

from __future__ import annotations

from pathlib import Path

from movierec.registry.lists import PrecomputedLists
from tests.modelkit import file_mapped


def test_lists_round_trip_memory_mapped(tmp_path: Path) -> None:
    lists = {7: ["b", "a", "c"], 3: ["c"], 12: []}
    names = PrecomputedLists.build(lists).save(tmp_path)
    assert sorted(names) == ["lists.items.npy", "lists.movies.npy", "lists.users.npy"]
    assert PrecomputedLists.saved_in(tmp_path)
    loaded = PrecomputedLists.load(tmp_path, mmap=True)
    assert file_mapped(loaded.items)
    assert [loaded.get(u) for u in (3, 7, 12, 4)] == [["c"], ["b", "a", "c"], [], None]
    assert len(loaded) == 3 and loaded.row(7) == 1 and loaded.row(99) == -1
