"""Fitting EASE's item-item weights in bounded memory, kept as `ItemNeighbours`.

EASE (Steck, "Embarrassingly shallow autoencoders for sparse data", WWW 2019) has the closed
form B = I - P diagMat(1/diag(P)), P = (X'X + lambda I)^-1: a dense movies x movies inverse. It
is fitted on the `max_movies` most interacted movies only (the rest have no EASE row and are
proposed by the other generators), with one dense matrix in memory: the Gram matrix is built
into it by blocks of rows from the sparse X, inverted in place (LAPACK's Cholesky `potrf`, then
`potri`), and each row of B is cut to its k strongest weights as it is read. Nothing
movies x movies is kept: the model saves the neighbours only. Time and memory by size:
`evaluation/bench_cf.py`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack

from movierec.model.cf import ItemNeighbours, RowBlock

EASE_MAX_MOVIES = 10_000  # the most interacted movies EASE is fitted on (a float64 Gram: 0.8 GB)
_ROWS_AT_ONCE = 512  # rows of the Gram matrix built, or of B cut, at a time


def ease_neighbours(
    X: sp.csr_matrix, lam: float, k: int, max_movies: int = EASE_MAX_MOVIES
) -> ItemNeighbours:
    """EASE on the `max_movies` most interacted movies of X (users x movies, any values:
    binarised), each kept movie's k strongest weights as its neighbours."""
    counts = np.diff(X.tocsc().indptr)
    kept = np.sort(np.argsort(-counts, kind="stable")[:max_movies])
    P = gram(X, kept, lam)
    invert_in_place(P)
    diag = P.diagonal().copy()

    def blocks() -> Iterator[RowBlock]:
        for start in range(0, kept.size, _ROWS_AT_ONCE):
            own = np.arange(start, min(start + _ROWS_AT_ONCE, kept.size))
            yield kept[own], P[own[0] : own[-1] + 1] / -diag[None, :], own

    return ItemNeighbours.from_blocks(blocks(), X.shape[1], k, columns=kept)


def gram(X: sp.csr_matrix, kept: np.ndarray, lam: float) -> np.ndarray:
    """X'X + lambda I over the `kept` movies (X binarised), dense float64, built by blocks of
    rows from the sparse matrices (memory: the result, two copies of X's kept columns and a
    block)."""
    Xk = sp.csr_matrix(X[:, kept], dtype=np.float64, copy=True)
    Xk.data[:] = 1.0
    Xt = Xk.T.tocsr()
    G = np.empty((kept.size, kept.size))
    for start in range(0, kept.size, _ROWS_AT_ONCE):
        stop = min(start + _ROWS_AT_ONCE, kept.size)
        G[start:stop] = (Xt[start:stop] @ Xk).toarray()
    G[np.diag_indices_from(G)] += lam
    return G


def invert_in_place(G: np.ndarray) -> None:
    """G (symmetric positive definite, C order) becomes its inverse in its own memory: the
    Cholesky factor, then the inverse, by LAPACK on G.T (the same matrix in Fortran order,
    so the routines overwrite it instead of copying), then the triangle they leave copied
    to the other."""
    potrf, potri = lapack.get_lapack_funcs(("potrf", "potri"), (G,))
    a = G.T
    factor, info = potrf(a, lower=False, clean=False, overwrite_a=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"Cholesky factorisation failed (LAPACK info {info})")
    inverse, info = potri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"inverse from the Cholesky factor failed (info {info})")
    if not np.shares_memory(inverse, G):
        a[...] = inverse  # a LAPACK wrapper that copied after all: same result, more memory
    _mirror_lower(G)


def _mirror_lower(G: np.ndarray) -> None:
    """Copies G's lower triangle (where LAPACK's upper one on G.T is) onto its upper one, by
    blocks of rows."""
    n = G.shape[0]
    for start in range(0, n, _ROWS_AT_ONCE):
        stop = min(start + _ROWS_AT_ONCE, n)
        G[start:stop, stop:] = G[stop:, start:stop].T
        square = G[start:stop, start:stop]
        upper = np.triu_indices(stop - start, 1)
        square[upper] = square.T[upper]
