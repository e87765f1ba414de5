"""Features of (user, movie) pairs for the rating model and the ranker.

Built from a `FeatureBase`: what the training data says about users and movies (counts,
means, shrunk biases, genre affinities, popularity, recency), demographics, genres, and the
collaborative-filtering models (explicit MF prediction and embeddings' dot product, implicit
ALS score, EASE score). Everything is numpy over dense indexes: no Python loop over pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from movierec.model.cf import Index

AGE_GROUPS = [0, 18, 25, 35, 45, 56, 200]


@dataclass
class FeatureBase:
    """Per-user and per-movie statistics of one training set, aligned with an `Index`."""

    index: Index
    genres: list[str]
    item_genres: np.ndarray  # n_items x n_genres, 0/1
    user_genre_share: np.ndarray  # n_users x n_genres: share of the user's interactions
    user_genre_dev_sum: np.ndarray  # n_users x n_genres: summed rating deviation from mu
    user_genre_dev_cnt: np.ndarray  # n_users x n_genres: ratings counted there
    user_stats: np.ndarray  # n_users x k
    item_stats: np.ndarray  # n_items x k
    user_demo: np.ndarray  # n_users x 3: age, gender (1 = F), occupation code
    mu: float

    USER_COLS = ("u_count", "u_mean", "u_minutes", "u_span_days")
    ITEM_COLS = ("i_count", "i_mean", "i_log_pop", "i_year", "i_age_days", "i_minutes")


def build_base(
    index: Index,
    ratings: pd.DataFrame,
    interactions: pd.DataFrame,
    users: pd.DataFrame,
    movies: pd.DataFrame,
    occupations: list[str],
) -> FeatureBase:
    n_u, n_i = len(index.users), len(index.movies)
    mu = float(ratings["rating"].mean()) if len(ratings) else 3.5
    ru = index.uidx(ratings["user_id"].to_numpy())
    ri = index.midx(ratings["movie_id"].to_numpy())
    r = ratings["rating"].to_numpy(dtype=float)
    ok = (ru >= 0) & (ri >= 0)
    ru, ri, r = ru[ok], ri[ok], r[ok]
    iu = index.uidx(interactions["user_id"].to_numpy())
    ii = index.midx(interactions["movie_id"].to_numpy())
    mins = interactions["minutes"].to_numpy(dtype=float)
    last = interactions["last_ts"]
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    t_days: np.ndarray = (pd.to_datetime(last, utc=True) - epoch).dt.days.to_numpy(dtype=float)
    k = (iu >= 0) & (ii >= 0)
    iu, ii, mins, t_days = iu[k], ii[k], mins[k], t_days[k]
    now = float(t_days.max()) if t_days.size else 0.0

    def shrunk_mean(
        idx: np.ndarray, n: int, shrink: float = MEAN_SHRINK
    ) -> tuple[np.ndarray, np.ndarray]:
        cnt = np.bincount(idx, minlength=n).astype(float)
        s = np.bincount(idx, r, minlength=n)
        return cnt, (s + shrink * mu) / (cnt + shrink)

    u_cnt, u_mean = shrunk_mean(ru, n_u)
    i_cnt, i_mean = shrunk_mean(ri, n_i)
    u_minutes = np.bincount(iu, mins, minlength=n_u) / np.maximum(np.bincount(iu, minlength=n_u), 1)
    u_first = _group_min(iu, t_days, n_u)
    u_span = np.nan_to_num(now - u_first)
    i_inter = np.bincount(ii, minlength=n_i).astype(float)
    i_first = _group_min(ii, t_days, n_i)
    i_minutes = np.bincount(ii, mins, minlength=n_i) / np.maximum(i_inter, 1)
    movie_rows = movies.set_index("movie_id").reindex(index.movies)
    year = pd.to_numeric(movie_rows["year"], errors="coerce").to_numpy(dtype=float)
    genres = sorted({g for gs in movies["genres"] for g in gs})
    gpos = {g: j for j, g in enumerate(genres)}
    item_genres = np.zeros((n_i, len(genres)), dtype=np.float32)
    for row, gs in enumerate(movie_rows["genres"]):
        if isinstance(gs, list | np.ndarray):
            for g in gs:
                item_genres[row, gpos[g]] = 1.0
    # genre share of each user's interactions, and genre rating deviation (shrunk to 0)
    share = np.zeros((n_u, len(genres)), dtype=np.float32)
    np.add.at(share, iu, item_genres[ii])
    share /= np.maximum(share.sum(axis=1, keepdims=True), 1)
    dev_sum = np.zeros((n_u, len(genres)))
    dev_cnt = np.zeros((n_u, len(genres)))
    np.add.at(dev_sum, ru, item_genres[ri] * (r - mu)[:, None])
    np.add.at(dev_cnt, ru, item_genres[ri])
    demo = users.set_index("user_id").reindex(index.users)
    occ = {o: j for j, o in enumerate(occupations)}
    user_demo = np.column_stack(
        [
            pd.to_numeric(demo["age"], errors="coerce").to_numpy(dtype=float),
            (demo["gender"] == "F").to_numpy(dtype=float)
            - demo["gender"].isna().to_numpy(dtype=float),
            demo["occupation"].map(occ).to_numpy(dtype=float),
        ]
    )
    return FeatureBase(
        index=index,
        genres=genres,
        item_genres=item_genres,
        user_genre_share=share,
        user_genre_dev_sum=dev_sum.astype(np.float32),
        user_genre_dev_cnt=dev_cnt.astype(np.float32),
        user_stats=np.column_stack([u_cnt, u_mean, u_minutes, u_span]),
        item_stats=np.column_stack(
            [i_cnt, i_mean, np.log1p(i_inter), year, np.nan_to_num(now - i_first), i_minutes]
        ),
        user_demo=user_demo,
        mu=mu,
    )


def _group_min(idx: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, np.inf)
    np.minimum.at(out, idx, values)
    out[np.isinf(out)] = np.nan
    return out


GENRE_SHRINK = 3.0
MEAN_SHRINK = 5.0


def pair_features(
    base: FeatureBase,
    u: np.ndarray,
    i: np.ndarray,
    extra: dict[str, np.ndarray],
) -> tuple[np.ndarray, list[str]]:
    """The feature matrix of pairs (dense indexes; -1 = unknown) and its column names."""
    ku, ki = u >= 0, i >= 0
    uu, ii = np.maximum(u, 0), np.maximum(i, 0)

    def take(mat: np.ndarray, idx: np.ndarray, known: np.ndarray) -> np.ndarray:
        out = mat[idx].astype(np.float32)
        out[~known] = np.nan
        return out

    us = take(base.user_stats, uu, ku)
    its = take(base.item_stats, ii, ki)
    demo = take(base.user_demo, uu, ku)
    ig = base.item_genres[ii]
    affinity = np.einsum("ij,ij->i", base.user_genre_share[uu], ig)
    dev_sum = base.user_genre_dev_sum[uu]
    dev_cnt = base.user_genre_dev_cnt[uu]
    per_genre = dev_sum / (np.maximum(dev_cnt, 0) + GENRE_SHRINK)
    genre_dev = np.einsum("ij,ij->i", per_genre, ig) / np.maximum(ig.sum(axis=1), 1)
    affinity[~ku] = np.nan
    genre_dev[~ku] = np.nan
    cols = [us, its, demo, affinity[:, None], genre_dev[:, None], ig]
    names = [
        *FeatureBase.USER_COLS,
        *FeatureBase.ITEM_COLS,
        "age",
        "female",
        "occupation",
        "genre_affinity",
        "genre_rating_dev",
        *[f"g_{g}" for g in base.genres],
    ]
    for name, values in extra.items():
        cols.append(values.astype(np.float32)[:, None])
        names.append(name)
    return np.hstack(cols).astype(np.float32), names


def age_group(age: np.ndarray) -> np.ndarray:
    return np.digitize(np.nan_to_num(age, nan=30.0), AGE_GROUPS[1:-1])
