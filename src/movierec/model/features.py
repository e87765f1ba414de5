"""Features of (user, movie) pairs for the rating model and the ranker.

Built from a `FeatureBase`: what the training data says about users and movies (counts,
means shrunk to the global mean, genre affinities and rating deviations, popularity, recency),
demographics, genres and year. Everything is numpy over dense indexes: no Python loop over
pairs. A pair whose user or movie is unknown (index -1) gets NaN for that side's features.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
import pandas as pd

from movierec.model.cf import Index

GENRE_SHRINK = 3.0
MEAN_SHRINK = 5.0
BASE_ARRAYS = (  # what `FeatureBase.arrays` saves
    "item_genres",
    "user_genre_share",
    "user_genre_dev_sum",
    "user_genre_dev_cnt",
    "user_stats",
    "item_stats",
    "user_demo",
)


@dataclass
class FeatureBase:
    """Per-user and per-movie statistics of one training set, aligned with an `Index`."""

    index: Index
    genres: list[str]
    item_genres: np.ndarray  # n_items x n_genres, 0/1
    user_genre_share: np.ndarray  # n_users x n_genres: share of the user's interactions
    user_genre_dev_sum: np.ndarray  # n_users x n_genres: summed rating deviation from mu
    user_genre_dev_cnt: np.ndarray  # n_users x n_genres: ratings counted there
    user_stats: np.ndarray  # n_users x USER_COLS
    item_stats: np.ndarray  # n_items x ITEM_COLS
    user_demo: np.ndarray  # n_users x 3: age, gender (1 = F, 0 = M, -1 unknown), occupation
    mu: float

    USER_COLS: ClassVar[tuple[str, ...]] = ("u_count", "u_mean", "u_minutes", "u_span_days")
    ITEM_COLS: ClassVar[tuple[str, ...]] = (
        "i_count",
        "i_mean",
        "i_log_pop",
        "i_year",
        "i_age_days",
        "i_minutes",
    )

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays to save (the index is saved with the CF stage)."""
        return {name: getattr(self, name) for name in BASE_ARRAYS}

    def scalars(self) -> dict[str, Any]:
        return {"genres": list(self.genres), "mu": self.mu}

    @classmethod
    def from_saved(
        cls, index: Index, arrays: Mapping[str, np.ndarray], scalars: Mapping[str, Any]
    ) -> FeatureBase:
        return cls(
            index=index,
            genres=[str(g) for g in scalars["genres"]],
            mu=float(scalars["mu"]),
            **{name: arrays[name] for name in BASE_ARRAYS},
        )


class _Rated(NamedTuple):
    u: np.ndarray
    i: np.ndarray
    r: np.ndarray


class _Watched(NamedTuple):
    u: np.ndarray
    i: np.ndarray
    minutes: np.ndarray
    days: np.ndarray  # days since the epoch of the interaction's last event


def build_base(
    index: Index,
    ratings: pd.DataFrame,
    interactions: pd.DataFrame,
    users: pd.DataFrame,
    movies: pd.DataFrame,
    occupations: list[str],
) -> FeatureBase:
    """The statistics of `ratings` and `interactions` over `index` (rows of unknown users or
    movies are left out)."""
    n_u, n_i = len(index.users), len(index.movies)
    mu = float(ratings["rating"].mean()) if len(ratings) else 3.5
    rated = _rated(index, ratings)
    watched = _watched(index, interactions)
    now = float(watched.days.max()) if watched.days.size else 0.0
    genres, item_genres, year = _movie_attributes(index, movies)
    share, dev_sum, dev_cnt = _user_genres(rated, watched, item_genres, n_u, mu)
    return FeatureBase(
        index=index,
        genres=genres,
        item_genres=item_genres,
        user_genre_share=share,
        user_genre_dev_sum=dev_sum,
        user_genre_dev_cnt=dev_cnt,
        user_stats=_user_stats(rated, watched, n_u, mu, now),
        item_stats=_item_stats(rated, watched, n_i, mu, now, year),
        user_demo=_user_demo(index, users, occupations),
        mu=mu,
    )


def _rated(index: Index, ratings: pd.DataFrame) -> _Rated:
    u = index.uidx(ratings["user_id"].to_numpy())
    i = index.midx(ratings["movie_id"].to_numpy())
    r = ratings["rating"].to_numpy(dtype=float)
    ok = (u >= 0) & (i >= 0)
    return _Rated(u[ok], i[ok], r[ok])


def _watched(index: Index, interactions: pd.DataFrame) -> _Watched:
    u = index.uidx(interactions["user_id"].to_numpy())
    i = index.midx(interactions["movie_id"].to_numpy())
    minutes = interactions["minutes"].to_numpy(dtype=float)
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    last = pd.to_datetime(interactions["last_ts"], utc=True)
    days: np.ndarray = (last - epoch).dt.days.to_numpy(dtype=float)
    ok = (u >= 0) & (i >= 0)
    return _Watched(u[ok], i[ok], minutes[ok], days[ok])


def _shrunk_mean(
    idx: np.ndarray, r: np.ndarray, n: int, mu: float
) -> tuple[np.ndarray, np.ndarray]:
    """Counts and means shrunk towards `mu` by MEAN_SHRINK pseudo-ratings."""
    cnt = np.bincount(idx, minlength=n).astype(float)
    total = np.bincount(idx, r, minlength=n)
    return cnt, (total + MEAN_SHRINK * mu) / (cnt + MEAN_SHRINK)


def _user_stats(rated: _Rated, watched: _Watched, n_u: int, mu: float, now: float) -> np.ndarray:
    count, mean = _shrunk_mean(rated.u, rated.r, n_u, mu)
    n_watched = np.maximum(np.bincount(watched.u, minlength=n_u), 1)
    minutes = np.bincount(watched.u, watched.minutes, minlength=n_u) / n_watched
    span = np.nan_to_num(now - _group_min(watched.u, watched.days, n_u))
    return np.column_stack([count, mean, minutes, span])


def _item_stats(
    rated: _Rated, watched: _Watched, n_i: int, mu: float, now: float, year: np.ndarray
) -> np.ndarray:
    count, mean = _shrunk_mean(rated.i, rated.r, n_i, mu)
    n_watched = np.bincount(watched.i, minlength=n_i).astype(float)
    age = np.nan_to_num(now - _group_min(watched.i, watched.days, n_i))
    minutes = np.bincount(watched.i, watched.minutes, minlength=n_i) / np.maximum(n_watched, 1)
    return np.column_stack([count, mean, np.log1p(n_watched), year, age, minutes])


def _movie_attributes(
    index: Index, movies: pd.DataFrame
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The genre names, each movie's 0/1 genre row, and its year (NaN when unknown)."""
    rows = movies.set_index("movie_id").reindex(index.movies)
    year = pd.to_numeric(rows["year"], errors="coerce").to_numpy(dtype=float)
    genres = sorted({g for gs in movies["genres"] for g in gs})
    position = {g: j for j, g in enumerate(genres)}
    item_genres = np.zeros((len(index.movies), len(genres)), dtype=np.float32)
    for row, gs in enumerate(rows["genres"]):
        if isinstance(gs, list | np.ndarray):
            for g in gs:
                item_genres[row, position[g]] = 1.0
    return genres, item_genres, year


def _user_genres(
    rated: _Rated, watched: _Watched, item_genres: np.ndarray, n_u: int, mu: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Genre share of each user's interactions, and their summed rating deviation from `mu`
    per genre with its count (shrunk to 0 when features are computed)."""
    n_g = item_genres.shape[1]
    share = np.zeros((n_u, n_g), dtype=np.float32)
    np.add.at(share, watched.u, item_genres[watched.i])
    share /= np.maximum(share.sum(axis=1, keepdims=True), 1)
    dev_sum = np.zeros((n_u, n_g))
    dev_cnt = np.zeros((n_u, n_g))
    np.add.at(dev_sum, rated.u, item_genres[rated.i] * (rated.r - mu)[:, None])
    np.add.at(dev_cnt, rated.u, item_genres[rated.i])
    return share, dev_sum.astype(np.float32), dev_cnt.astype(np.float32)


def _user_demo(index: Index, users: pd.DataFrame, occupations: list[str]) -> np.ndarray:
    demo = users.set_index("user_id").reindex(index.users)
    code = {o: j for j, o in enumerate(occupations)}
    female = (demo["gender"] == "F").to_numpy(dtype=float)
    return np.column_stack(
        [
            pd.to_numeric(demo["age"], errors="coerce").to_numpy(dtype=float),
            female - demo["gender"].isna().to_numpy(dtype=float),
            demo["occupation"].map(code).to_numpy(dtype=float),
        ]
    )


def _group_min(idx: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, np.inf)
    np.minimum.at(out, idx, values)
    out[np.isinf(out)] = np.nan
    return out


def occupations(users: pd.DataFrame) -> list[str]:
    """The occupation codes' order: every occupation in the users table, sorted."""
    return sorted(users["occupation"].dropna().astype(str).unique())


def pair_features(
    base: FeatureBase,
    u: np.ndarray,
    i: np.ndarray,
    extra: Mapping[str, np.ndarray],
) -> tuple[np.ndarray, list[str]]:
    """The feature matrix of pairs (dense indexes; -1 = unknown) and its column names."""
    ku, ki = u >= 0, i >= 0
    uu, ii = np.maximum(u, 0), np.maximum(i, 0)

    def take(mat: np.ndarray, idx: np.ndarray, known: np.ndarray) -> np.ndarray:
        out = mat[idx].astype(np.float32)
        out[~known] = np.nan
        return out

    ig = base.item_genres[ii]
    affinity = np.einsum("ij,ij->i", base.user_genre_share[uu], ig)
    per_genre = base.user_genre_dev_sum[uu] / (
        np.maximum(base.user_genre_dev_cnt[uu], 0) + GENRE_SHRINK
    )
    genre_dev = np.einsum("ij,ij->i", per_genre, ig) / np.maximum(ig.sum(axis=1), 1)
    affinity[~ku] = np.nan
    genre_dev[~ku] = np.nan
    cols = [
        take(base.user_stats, uu, ku),
        take(base.item_stats, ii, ki),
        take(base.user_demo, uu, ku),
        affinity[:, None],
        genre_dev[:, None],
        ig,
    ]
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
