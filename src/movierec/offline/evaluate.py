"""Offline evaluation: rating and ranking metrics, overall, per slice and per group, of any
`Recommender` (`predict_ratings(users, movies)` and `recommend(users, k)`); never imports Flask.

Rating metrics cover every test row; each row is also in one slice, by what the model has
history of: `known` (user and movie), `new_user`, `new_movie` (a known user, a movie new to
the model). Ranking protocol: for each test user, the relevant movies are their test movies
rated >= 4; the list is the model's top-k among movies the user did not interact with in
training; NDCG@10 uses binary gains. Users with no relevant test movie are not counted.
Ranking is measured on known users; new users (whose list is the cold-start list) apart.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from movierec.core.schema import age_group_label
from movierec.model.recommender import Recommender
from movierec.offline.metric_functions import coverage, ranking_metrics, rating_metrics

SLICES = ("known", "new_user", "new_movie")


def slice_of(test: pd.DataFrame, known_users: np.ndarray, known_movies: np.ndarray) -> np.ndarray:
    """Each test row's slice name."""
    user = test["user_id"].isin(known_users).to_numpy()
    movie = test["movie_id"].astype(str).isin(known_movies).to_numpy()
    return np.where(~user, "new_user", np.where(~movie, "new_movie", "known"))


def evaluate_model(
    model: Recommender,
    test: pd.DataFrame,
    users: pd.DataFrame,
    catalog_size: int,
    k: int = 20,
) -> dict[str, object]:
    """RMSE and MAE on every row and per slice; NDCG@10, Recall@20 and coverage of known
    users' lists; per gender and age group; the cold-start lists of new users apart."""
    pred = model.predict_ratings(test["user_id"].to_numpy(), test["movie_id"].to_numpy())
    test = test.assign(pred=pred, slice=slice_of(test, model.known_users, model.known_movies))
    topk = model.recommend(np.unique(test["user_id"].to_numpy()), k)
    out: dict[str, object] = {**rating_metrics(test["rating"].to_numpy(), test["pred"].to_numpy())}
    out["test_rows"] = len(test)
    out["slices"] = {
        name: rating_metrics(part["rating"].to_numpy(), part["pred"].to_numpy())
        | {"rows": len(part)}
        for name, part in test.groupby("slice")
    }
    warm = test[test["slice"] != "new_user"]
    out.update(ranking_metrics(topk, warm))
    warm_users = set(warm["user_id"].tolist())
    out["coverage"] = coverage({u: v for u, v in topk.items() if u in warm_users}, catalog_size)
    out["by_group"] = _by_group(warm, users, topk)
    cold = test[test["slice"] == "new_user"]
    if len(cold):
        c = rating_metrics(cold["rating"].to_numpy(), cold["pred"].to_numpy())
        c.update(ranking_metrics(topk, cold))
        c["users"] = int(cold["user_id"].nunique())
        out["cold_start"] = c
    return out


def _by_group(
    warm: pd.DataFrame, users: pd.DataFrame, topk: dict[int, list[str]]
) -> dict[str, dict[str, dict[str, float]]]:
    demo = users.set_index("user_id")
    groups: dict[str, dict[str, dict[str, float]]] = {}
    for name, labels in (
        ("gender", warm["user_id"].map(demo["gender"])),
        ("age_group", age_group_label(warm["user_id"].map(demo["age"]).to_numpy(dtype=float))),
    ):
        groups[name] = {}
        for label, part in warm.groupby(labels):
            g = rating_metrics(part["rating"].to_numpy(), part["pred"].to_numpy())
            g.update(ranking_metrics(topk, part))
            groups[name][str(label)] = g
    return groups
