"""Item neighbours: each movie's strongest item-item weights, which give EASE's scores of a
history (exactly, when every row is kept)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from movierec.model.cf import ItemNeighbours


def test_neighbours_keep_each_rows_largest_weights_without_the_diagonal() -> None:
    B = np.array(
        [[9.0, 1.0, 3.0, 2.0], [4.0, 9.0, -1.0, 0.5], [0.0, 2.0, 9.0, 1.0], [1.0, 1.5, 3.0, 9.0]]
    )
    nb = ItemNeighbours.from_dense(B, k=2)
    rows = [
        dict(zip(nb.indices[lo:hi].tolist(), nb.scores[lo:hi].tolist(), strict=True))
        for lo, hi in zip(nb.indptr[:-1], nb.indptr[1:], strict=True)
    ]
    assert rows == [{2: 3.0, 3: 2.0}, {0: 4.0, 3: 0.5}, {1: 2.0, 3: 1.0}, {2: 3.0, 1: 1.5}]
    assert nb.fold_in(np.array([0, 3])).tolist() == [0.0, 1.5, 6.0, 2.0]


def test_complete_neighbours_fold_in_exactly_as_ease_scores(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    B = rng.normal(size=(30, 30)).astype(np.float32)
    np.fill_diagonal(B, 0.0)
    ItemNeighbours.from_dense(B, k=29).save(tmp_path, "neighbours")
    nb = ItemNeighbours.load(tmp_path, "neighbours", mmap=True)
    history = np.array([3, 17, 20])
    x = np.zeros(30, dtype=np.float32)
    x[history] = 1.0
    np.testing.assert_allclose(nb.fold_in(history), x @ B, rtol=1e-5, atol=1e-5)
    assert nb.fold_in(np.array([], dtype=np.int64)).tolist() == [0.0] * 30
