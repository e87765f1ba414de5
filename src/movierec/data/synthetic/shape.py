"""What the synthetic site takes from a real dataset (ml-1m): the shapes of activity,
popularity, ratings and time, and the users and movies to draw attributes from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from movierec.data.movielens import MovieLensTables


@dataclass(frozen=True)
class SiteShape:
    """What the generator takes from a real dataset."""

    user_log_sd: float  # sd of log(ratings per user)
    movie_curve: np.ndarray  # ratings per movie, most rated first
    rating_shares: np.ndarray  # shares of 1..5
    user_mean_sd: float  # sd of users' mean rating
    movie_mean_sd: float  # sd of movies' mean rating
    rating_sd: float
    popular_rated_higher: float  # correlation of a movie's mean rating with log(its ratings)
    span_shares: np.ndarray  # each user's active span / the dataset's span
    users: pd.DataFrame  # age, gender, occupation to draw from
    movies: pd.DataFrame  # title, year, genres to draw from

    @classmethod
    def of(cls, tables: MovieLensTables) -> SiteShape:
        r = tables.ratings
        per_user = r.groupby("user_id")["rating"].agg(["size", "mean"])
        per_movie = r.groupby("movie_id")["rating"].agg(["size", "mean"])
        ts = r["timestamp"]
        spans = r.groupby("user_id")["timestamp"].agg(lambda s: s.max() - s.min())
        shares = r["rating"].value_counts(normalize=True).reindex(range(1, 6), fill_value=0.0)
        return cls(
            user_log_sd=float(np.log(per_user["size"]).std()),
            movie_curve=np.sort(per_movie["size"].to_numpy())[::-1].astype(float),
            rating_shares=shares.to_numpy(dtype=float),
            user_mean_sd=float(per_user["mean"].std()),
            movie_mean_sd=float(per_movie["mean"].std()),
            rating_sd=float(r["rating"].std()),
            popular_rated_higher=float(
                np.corrcoef(np.log(per_movie["size"]), per_movie["mean"])[0, 1]
            ),
            span_shares=(spans / (ts.max() - ts.min())).to_numpy(dtype=float),
            users=tables.users[["age", "gender", "occupation"]].reset_index(drop=True),
            movies=tables.movies[["title", "year", "genres"]].reset_index(drop=True),
        )
