"""Item neighbours: each movie's strongest item-item weights, which give EASE's scores of a
history (exactly, when every row is kept); EASE's fitted in bounded memory (the Gram matrix by
blocks, inverted in place, on the most interacted movies only) and RP3beta's by blocks of rows
are the dense models' strongest weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from movierec.model import cf
from movierec.model.cf import EASE, ItemNeighbours, RP3beta
from movierec.model.training import item_item
from movierec.model.training.item_item import ease_neighbours


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


def _random_interactions(users: int, movies: int, seed: int) -> sp.csr_matrix:
    X = sp.random(users, movies, density=0.15, format="csr", random_state=seed, dtype=np.float32)
    X.data[:] = 2.0  # any value: EASE binarises
    return X


def _rows(nb: ItemNeighbours) -> list[dict[int, float]]:
    return [
        dict(zip(nb.indices[lo:hi].tolist(), nb.scores[lo:hi].tolist(), strict=True))
        for lo, hi in zip(nb.indptr[:-1], nb.indptr[1:], strict=True)
    ]


def test_ease_neighbours_are_the_dense_eases_strongest_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(item_item, "_ROWS_AT_ONCE", 7)  # several blocks of rows
    X = _random_interactions(300, 40, seed=2)
    dense = ItemNeighbours.from_dense(EASE(3.0).fit(X).B, k=5)
    fitted = ease_neighbours(X, 3.0, k=5)
    for want, got in zip(_rows(dense), _rows(fitted), strict=True):
        assert set(got) == set(want)
        np.testing.assert_allclose([got[j] for j in want], list(want.values()), rtol=1e-4)


def test_ease_on_the_most_interacted_movies_only_scores_them() -> None:
    X = _random_interactions(300, 40, seed=3)
    counts = np.diff(X.tocsc().indptr)
    kept = np.sort(np.argsort(-counts, kind="stable")[:12])
    nb = ease_neighbours(X, 3.0, k=20, max_movies=12)
    has_row = np.diff(nb.indptr) > 0
    assert np.flatnonzero(has_row).tolist() == kept.tolist()
    assert set(nb.indices.tolist()) <= set(kept.tolist())
    # the kept movies' weights: EASE fitted on their columns alone, every other weight kept
    sub = ItemNeighbours.from_dense(EASE(3.0).fit(X[:, kept]).B, k=11)
    expected = [{int(kept[j]): w for j, w in row.items()} for row in _rows(sub)]
    got = [row for row, has in zip(_rows(nb), has_row, strict=True) if has]
    for want, row in zip(expected, got, strict=True):
        assert set(row) == set(want)
        np.testing.assert_allclose([row[j] for j in want], list(want.values()), rtol=1e-4)


def test_the_inverse_is_computed_in_the_matrixs_own_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(item_item, "_ROWS_AT_ONCE", 4)
    rng = np.random.default_rng(4)
    A = rng.normal(size=(11, 11))
    G = A @ A.T + 11 * np.eye(11)
    expected = np.linalg.inv(G)
    copied = []
    potrf_potri = item_item.lapack.get_lapack_funcs(("potrf", "potri"), (G,))

    def spy(names: tuple[str, str], arrays: tuple[np.ndarray]) -> tuple[object, object]:
        potrf, potri = potrf_potri

        def checked_potri(c: np.ndarray, **kw: object) -> tuple[np.ndarray, int]:
            out, info = potri(c, **kw)
            copied.append(not np.shares_memory(out, arrays[0]))
            return out, info

        return potrf, checked_potri

    monkeypatch.setattr(item_item.lapack, "get_lapack_funcs", spy)
    item_item.invert_in_place(G)
    np.testing.assert_allclose(G, expected, rtol=1e-10, atol=1e-12)
    assert copied == [False]


def test_rp3beta_by_blocks_of_rows_is_the_whole_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cf, "_ROWS_AT_ONCE", 3)
    X = _random_interactions(50, 10, seed=5)
    Xb = (X > 0).astype(np.float64).toarray()
    per_user, per_movie = Xb.sum(axis=1), Xb.sum(axis=0)
    walk = (Xb.T / np.maximum(per_movie, 1)[:, None]) @ (Xb / np.maximum(per_user, 1)[:, None])
    W = walk * np.maximum(per_movie, 1.0) ** -0.5
    want = ItemNeighbours.from_dense(W, k=4)
    got = RP3beta(beta=0.5, k=4).fit(X).W
    for w, g in zip(_rows(want), _rows(got), strict=True):
        assert set(g) == set(w)
        np.testing.assert_allclose([g[j] for j in w], list(w.values()), rtol=1e-5)
