"""The CF models: the index, the explicit MF and EASE, against answers computed by hand."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from movierec.model.cf import EASE, BiasedMF, Index, ItemNeighbours, interaction_matrix


def test_the_index_gives_minus_one_for_unknown_ids() -> None:
    index = Index.build(np.array([7, 3, 7, 5]), np.array(["b", "a", "c"], dtype=object))
    assert index.users.tolist() == [3, 5, 7]
    assert index.uidx(np.array([5, 4, 7, 100])).tolist() == [1, -1, 2, -1]
    assert index.midx(np.array(["c", "z", "a"])).tolist() == [2, -1, 0]
    empty = Index.build(np.array([], dtype=int), np.array([], dtype=object))
    assert empty.uidx(np.array([1])).tolist() == [-1]


def test_mf_without_factors_learns_the_regularised_biases() -> None:
    """With no factors and no bias regularisation, alternating least squares converges to
    the additive fit r = mu + b_u + b_i, which a 2x2 table with one cell missing fits
    exactly: user 1 rates one point higher, movie 1 two points higher."""
    u = np.array([0, 0, 1])
    i = np.array([0, 1, 0])
    r = np.array([2.0, 4.0, 3.0])
    mf = BiasedMF(factors=0, reg=1.0, bias_reg=0.0, iters=50).fit(u, i, r, 2, 2)
    yes = np.ones(3, dtype=bool)
    np.testing.assert_allclose(mf.predict(u, i, yes, yes), r, atol=1e-6)
    one = np.array([True])
    np.testing.assert_allclose(mf.predict(np.array([1]), np.array([1]), one, one), [5.0], atol=1e-6)
    # an unknown user gets the global mean plus the movie's bias, never another user's
    unknown = mf.predict(np.array([1]), np.array([1]), ~one, one)
    np.testing.assert_allclose(unknown, [mf.mu + mf.bi[1]])


def test_an_mf_update_is_each_users_ridge_regression_on_the_movies_fixed_side() -> None:
    """One user-side update solves, for every user, the ridge regression of their residual
    ratings (r - mu - b_i) on [1, q_i] with penalties (bias_reg, reg, ...): checked user by
    user against numpy's least squares on the augmented system."""
    rng = np.random.default_rng(3)
    n_users, n_items, k = 6, 9, 3
    u = np.repeat(np.arange(n_users), 5)
    i = np.concatenate([rng.choice(n_items, 5, replace=False) for _ in range(n_users)])
    r = rng.integers(1, 6, size=u.size).astype(float)
    mf = BiasedMF(factors=k, reg=2.0, bias_reg=0.5, iters=0, seed=1).fit(u, i, r, n_users, 9)
    mf.Q = rng.normal(size=(n_items, k))
    mf.bi = rng.normal(size=n_items)
    by_user = sp.csr_matrix((np.ones(u.size), (u, i)), shape=(n_users, n_items))
    mf._solve(by_user, u, i, r, u_side=True)
    penalty = np.sqrt(np.r_[0.5, np.full(k, 2.0)])
    for user in range(n_users):
        rows = u == user
        A = np.hstack([np.ones((rows.sum(), 1)), mf.Q[i[rows]]])
        y = r[rows] - mf.mu - mf.bi[i[rows]]
        expected = np.linalg.lstsq(
            np.vstack([A, np.diag(penalty)]), np.r_[y, np.zeros(k + 1)], rcond=None
        )[0]
        np.testing.assert_allclose(np.r_[mf.bu[user], mf.P[user]], expected, atol=1e-9)


def test_ease_is_the_closed_form_and_never_scores_an_item_by_itself() -> None:
    X = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1]], dtype=np.float32))
    lam = 2.0
    model = EASE(lam).fit(X)
    G = X.T.toarray() @ X.toarray() + lam * np.eye(3)
    P = np.linalg.inv(G)
    expected = np.eye(3) - P / np.diag(P)
    np.testing.assert_allclose(model.B, expected, atol=1e-6)
    assert np.all(np.diag(model.B) == 0)
    np.testing.assert_allclose(model.scores(X[:1]), X[:1].toarray() @ expected, atol=1e-6)


def test_the_interaction_matrix_sums_repeated_pairs() -> None:
    m = interaction_matrix(np.array([0, 0, 1]), np.array([1, 1, 0]), 2, 2, np.array([1, 2, 5]))
    assert m.toarray().tolist() == [[0.0, 3.0], [5.0, 0.0]]


def test_item_neighbours_fold_in_one_user_as_scores_of_many_rows() -> None:
    rng = np.random.default_rng(1)
    ragged = sp.random(12, 12, density=0.3, format="csr", random_state=1, dtype=np.float32)
    for W in (
        ItemNeighbours.from_dense(rng.random((12, 12)), k=4),  # k per row: the fast path
        ItemNeighbours(ragged.indptr, ragged.indices, ragged.data),  # rows of any length
    ):
        users = sp.csr_matrix(np.array([[1, 0, 0, 1] * 3, [0] * 12, [0, 1] * 6], dtype=float))
        many = W.scores_of(users)
        for row in range(3):
            one = W.fold_in(users[row].indices)
            np.testing.assert_allclose(one, many[row], rtol=1e-6, atol=1e-6)
