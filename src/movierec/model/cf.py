"""Collaborative-filtering models, in numpy/scipy, with a small common interface.

- `BiasedMF`: explicit ratings, r ~ mu + b_u + b_i + p_u . q_i, fitted by alternating least
  squares with L2 regularisation (closed-form per user / per item).
- `EASE`: Steck's embarrassingly shallow autoencoder on the implicit interaction matrix
  (closed form B = I - P diagMat(1/diag(P)), P = (X'X + lambda I)^-1); a strong top-N model.
- `RP3beta`: a three-step random walk item -> user -> item with the destination's popularity
  discounted; a second item-item generator of candidates, kept as `ItemNeighbours` (each
  movie's strongest weights, a sparse row), so that a user's scores are the sum of the rows of
  the movies they watched - the same sum offline and at request time (fold-in).
(The implicit-feedback ALS embeddings are fitted with the `implicit` library in
`model.training`, which serving never imports.)

Ids are dense indexes built by `Index`. Pairs of ids become `Pairs`: valid rows plus explicit
masks of what is not in the index, so that no -1 ever indexes an array.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Self

import numpy as np
import scipy.sparse as sp

from movierec.model.arrays import load_arrays, save_arrays

_ROWS_AT_ONCE = 1024  # rows of a dense item-item matrix cut at a time


@dataclass
class Index:
    """Dense integer indexes for user and movie ids."""

    users: np.ndarray  # sorted user ids
    movies: np.ndarray  # sorted movie ids (str)

    @classmethod
    def build(cls, user_ids: np.ndarray, movie_ids: np.ndarray) -> Index:
        return cls(np.unique(user_ids), np.unique(np.asarray(movie_ids, dtype=object)).astype(str))

    def uidx(self, user_ids: np.ndarray) -> np.ndarray:
        """Index of each user, -1 when unknown."""
        return _lookup(self.users, np.asarray(user_ids))

    def midx(self, movie_ids: np.ndarray) -> np.ndarray:
        return _lookup(self.movies, np.asarray(movie_ids, dtype=object).astype(str))


@dataclass(frozen=True)
class Pairs:
    """(user, movie) pairs as rows of an `Index`, with what is unknown explicit.

    `u` and `i` are always valid rows (0 stands in for a side that is not in the index);
    `user_listed` / `movie_listed` say whether the side is in the index; `user_hidden` /
    `movie_hidden` hide a side's history (the rating model's cold-start training rows, which
    must look like a new user or movie)."""

    u: np.ndarray
    i: np.ndarray
    user_listed: np.ndarray
    movie_listed: np.ndarray
    user_hidden: np.ndarray
    movie_hidden: np.ndarray

    @classmethod
    def rows(
        cls,
        u: np.ndarray,
        i: np.ndarray,
        user_hidden: np.ndarray | None = None,
        movie_hidden: np.ndarray | None = None,
    ) -> Pairs:
        """From index rows as `Index.uidx` / `midx` give them (-1: not in the index)."""
        u, i = np.asarray(u, dtype=np.int64), np.asarray(i, dtype=np.int64)
        no = np.zeros(u.shape, dtype=bool)
        return cls(
            np.maximum(u, 0),
            np.maximum(i, 0),
            u >= 0,
            i >= 0,
            no if user_hidden is None else user_hidden,
            no if movie_hidden is None else movie_hidden,
        )

    @classmethod
    def of(cls, index: Index, user_ids: np.ndarray, movie_ids: np.ndarray) -> Pairs:
        return cls.rows(index.uidx(user_ids), index.midx(movie_ids))

    def __len__(self) -> int:
        return int(self.u.size)

    def hide(self, users: np.ndarray, movies: np.ndarray, unlist_users: np.ndarray) -> Pairs:
        """The same pairs with more history hidden, and some users taken out of the index
        (their demographics unknown too)."""
        return Pairs(
            self.u,
            self.i,
            self.user_listed & ~unlist_users,
            self.movie_listed,
            self.user_hidden | users | unlist_users,
            self.movie_hidden | movies,
        )

    def take(self, rows: np.ndarray) -> Pairs:
        return Pairs(
            self.u[rows],
            self.i[rows],
            self.user_listed[rows],
            self.movie_listed[rows],
            self.user_hidden[rows],
            self.movie_hidden[rows],
        )


def _lookup(sorted_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    if sorted_ids.size == 0:
        return np.full(values.shape, -1, dtype=np.int64)
    pos = np.searchsorted(sorted_ids, values)
    pos = np.clip(pos, 0, sorted_ids.size - 1)
    return np.where(sorted_ids[pos] == values, pos, -1).astype(np.int64)


class BiasedMF:
    """Explicit matrix factorisation with biases, by ALS."""

    def __init__(
        self,
        factors: int = 32,
        reg: float = 8.0,
        bias_reg: float = 5.0,
        iters: int = 12,
        seed: int = 0,
    ):
        self.factors, self.reg, self.bias_reg = factors, reg, bias_reg
        self.iters, self.seed = iters, seed

    def fit(
        self, u: np.ndarray, i: np.ndarray, r: np.ndarray, n_users: int, n_items: int
    ) -> BiasedMF:
        rng = np.random.default_rng(self.seed)
        r = r.astype(np.float64)
        self.mu = float(r.mean()) if r.size else 3.5
        self.bu = np.zeros(n_users)
        self.bi = np.zeros(n_items)
        self.P = rng.normal(0, 0.05, (n_users, self.factors))
        self.Q = rng.normal(0, 0.05, (n_items, self.factors))
        ones = np.ones(u.size)
        by_user = sp.csr_matrix((ones, (u, i)), shape=(n_users, n_items))
        by_item = by_user.T.tocsr()
        for _ in range(self.iters):
            self._solve(by_user, u, i, r, u_side=True)
            self._solve(by_item, i, u, r, u_side=False)
        return self

    def _solve(
        self, M: sp.csr_matrix, own: np.ndarray, other: np.ndarray, r: np.ndarray, u_side: bool
    ) -> None:
        """Closed-form update of one side's [bias, factors] with the other side fixed, for
        every row at once: G_x = sum over its ratings of a a^T (a = [1, other's factors]) is
        the sparse indicator times the other side's outer products - their upper triangles
        only (G is symmetric: half the work of the fit's costliest product)."""
        X, Y = (self.P, self.Q) if u_side else (self.Q, self.P)
        b_self, b_other = (self.bu, self.bi) if u_side else (self.bi, self.bu)
        k = self.factors
        A = np.hstack([np.ones((Y.shape[0], 1)), Y])
        upper_i, upper_j = np.triu_indices(k + 1)
        upper = np.asarray(M @ (A[:, upper_i] * A[:, upper_j]))
        G = np.empty((M.shape[0], k + 1, k + 1))
        G[:, upper_i, upper_j] = upper
        G[:, upper_j, upper_i] = upper
        resid = r - self.mu - b_other[other]
        rhs = np.asarray(sp.csr_matrix((resid, (own, other)), shape=M.shape) @ A)
        G += np.diag(np.r_[self.bias_reg, np.full(k, self.reg)])
        sol = np.linalg.solve(G, rhs[..., None])[..., 0]
        has = np.diff(M.indptr) > 0
        b_self[has] = sol[has, 0]
        X[has] = sol[has, 1:]

    def predict(
        self, u: np.ndarray, i: np.ndarray, known_u: np.ndarray, known_i: np.ndarray
    ) -> np.ndarray:
        """mu, plus the bias of each side known to the fit, plus the factors' dot product
        where both are known (`u`, `i` valid rows; the masks say which were fitted)."""
        out = np.full(u.shape, self.mu)
        out += np.where(known_u, self.bu[u], 0.0)
        out += np.where(known_i, self.bi[i], 0.0)
        both = known_u & known_i
        out[both] += np.einsum("ij,ij->i", self.P[u[both]], self.Q[i[both]])
        return out


def interaction_matrix(
    u: np.ndarray, i: np.ndarray, n_users: int, n_items: int, values: np.ndarray | None = None
) -> sp.csr_matrix:
    data = np.ones(u.size, dtype=np.float32) if values is None else values.astype(np.float32)
    m = sp.csr_matrix((data, (u, i)), shape=(n_users, n_items))
    m.sum_duplicates()
    return m


class EASE:
    """Item-item closed-form top-N model on a binary user x item matrix."""

    def __init__(self, lam: float = 500.0):
        self.lam = lam

    def fit(self, X: sp.csr_matrix) -> EASE:
        Xb = X.copy()
        Xb.data[:] = 1.0
        G = (Xb.T @ Xb).toarray().astype(np.float64)
        G[np.diag_indices_from(G)] += self.lam
        P = np.linalg.inv(G)
        B = -P / np.diag(P)
        B[np.diag_indices_from(B)] = 0.0
        self.B = B.astype(np.float32)
        return self

    def scores(self, X_rows: sp.csr_matrix) -> np.ndarray:
        Xb = X_rows.copy()
        Xb.data[:] = 1.0
        return np.asarray(Xb @ self.B)


RowBlock = tuple[np.ndarray, np.ndarray, np.ndarray]  # rows, their weights, own columns


@dataclass(frozen=True)
class ItemNeighbours:
    """Each movie's strongest item-item weights, a sparse row per movie (k per row, or none
    for a movie left out of the fit). A history's scores are the sum of its movies' rows;
    `scores_of` computes them for one user or many with the same product, so a user's
    scores do not depend on who else is scored with them."""

    indptr: np.ndarray
    indices: np.ndarray
    scores: np.ndarray

    @classmethod
    def from_dense(cls, item_item: np.ndarray, k: int) -> Self:
        """The k largest weights of each row (the diagonal excluded), row block by row block."""
        n = item_item.shape[0]
        blocks = (
            (rows, np.array(item_item[rows[0] : rows[-1] + 1], dtype=np.float32), rows)
            for rows in np.array_split(np.arange(n), max(1, -(-n // _ROWS_AT_ONCE)))
            if rows.size
        )
        return cls.from_blocks(blocks, n, k)

    @classmethod
    def from_blocks(
        cls, blocks: Iterable[RowBlock], n: int, k: int, columns: np.ndarray | None = None
    ) -> Self:
        """The k largest weights of each row of `blocks` - (rows, weights, own), each row's
        weights over `columns` (default: every movie) and `own` the column of the row's own
        movie, never kept - as n movies' neighbours; a row no block gives is empty."""
        width = n if columns is None else columns.size
        k = max(0, min(k, width - 1))
        counts = np.zeros(n, dtype=np.int64)
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for rows, weights, own in blocks:
            weights = np.asarray(weights, dtype=np.float32)
            weights[np.arange(rows.size), own] = -np.inf
            top = np.argpartition(-weights, max(k - 1, 0), axis=1)[:, :k]
            cols = top if columns is None else columns[top]
            parts.append((rows, cols, np.take_along_axis(weights, top, axis=1)))
            counts[rows] = k
        if not parts:
            parts.append((np.empty(0, np.int64), np.empty((0, k), np.int64), np.empty((0, k))))
        order = np.argsort(np.concatenate([p[0] for p in parts]))
        indices = np.concatenate([p[1] for p in parts])[order]
        scores = np.concatenate([p[2] for p in parts])[order]
        dtype = np.int32 if counts.sum() < np.iinfo(np.int32).max else np.int64
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(dtype)
        return cls(indptr, indices.ravel().astype(np.int32), scores.ravel().astype(np.float32))

    @property
    def movies(self) -> int:
        return int(self.indptr.size - 1)

    @cached_property
    def matrix(self) -> sp.csr_matrix:
        """The neighbours as a movies x movies sparse matrix (views of the arrays when their
        index types agree, as `from_blocks` makes them: memory-mapped files stay shared)."""
        n = self.movies
        return sp.csr_matrix((self.scores, self.indices, self.indptr), shape=(n, n))

    def save(self, directory: Path, prefix: str) -> list[str]:
        arrays = {"indptr": self.indptr, "indices": self.indices, "scores": self.scores}
        return save_arrays(directory, prefix, arrays)

    @classmethod
    def load(cls, directory: Path, prefix: str, mmap: bool = False) -> Self:
        arrays = load_arrays(directory, prefix, ("indptr", "indices", "scores"), mmap)
        return cls(arrays["indptr"], arrays["indices"], arrays["scores"])

    def fold_in(self, history: np.ndarray) -> np.ndarray:
        """Scores of every movie for a user whose history is `history` (movie positions)."""
        watched = np.unique(np.asarray(history, dtype=np.int64))
        row = sp.csr_matrix(
            (np.ones(watched.size, np.float32), watched, [0, watched.size]),
            shape=(1, self.movies),
        )
        return self.scores_of(row)[0]

    def scores_of(self, X_rows: sp.csr_matrix) -> np.ndarray:
        """Scores of many users at once: rows of a users x movies matrix (1 where watched;
        each row's columns sorted, as a canonical matrix keeps them). Float32 sums, each row
        computed alone: `fold_in` of a row's history gives exactly its row here."""
        Xb = sp.csr_matrix(
            (np.ones(X_rows.indices.size, np.float32), X_rows.indices, X_rows.indptr),
            shape=X_rows.shape,
        )
        return np.asarray((Xb @ self.matrix).toarray())


class RP3beta:
    """Item-item weights of a three-step random walk, item -> user -> item, divided by the
    destination's popularity to the power beta (Paudel et al., "Updatable, accurate, diverse,
    and scalable recommendations for interactive applications", TiiS 2016; one of the strongest
    simple top-N models in Ferrari Dacrema et al., RecSys 2019):
    W[i, j] = sum_u P(u | i) P(j | u) / pop(j)^beta, each row kept to its k largest weights,
    computed by blocks of rows (memory: a block's rows x movies, never movies x movies)."""

    def __init__(self, beta: float = 0.5, k: int = 100):
        self.beta, self.k = beta, k

    def fit(self, X: sp.csr_matrix) -> RP3beta:
        Xb = sp.csr_matrix(X, dtype=np.float64, copy=True)
        Xb.data[:] = 1.0
        per_user = np.asarray(Xb.sum(axis=1)).ravel()
        per_movie = np.asarray(Xb.sum(axis=0)).ravel()
        walk_from_user = (sp.diags(_inverse(per_user)) @ Xb).tocsr()  # P(j | u)
        walk_from_movie = (sp.diags(_inverse(per_movie)) @ Xb.T).tocsr()  # P(u | i)
        discount = np.power(np.maximum(per_movie, 1.0), -self.beta)[None, :]
        n = Xb.shape[1]

        def blocks() -> Iterator[RowBlock]:
            for start in range(0, n, _ROWS_AT_ONCE):
                rows = np.arange(start, min(start + _ROWS_AT_ONCE, n))
                W = (walk_from_movie[rows[0] : rows[-1] + 1] @ walk_from_user).toarray()
                yield rows, W * discount, rows

        self.W = ItemNeighbours.from_blocks(blocks(), n, self.k)
        return self

    def scores(self, X_rows: sp.csr_matrix) -> np.ndarray:
        return self.W.scores_of(X_rows)


def _inverse(counts: np.ndarray) -> np.ndarray:
    return np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
