"""Offline evaluation: rating and ranking metrics, overall and per group, of any `Recommender`
(`predict_ratings(users, movies)` and `recommend(users, k)`); never imports Flask.

Ranking protocol: for each test user, the relevant movies are their test movies rated >= 4;
the list is the model's top-k among movies the user did not rate in training; NDCG@10 uses
binary gains. Users with no relevant test movie are not counted. Cold-start users (in the test
set but absent from training) are measured separately.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from movierec.core.schema import age_group_label
from movierec.model.recommender import Recommender
from movierec.offline.metrics import coverage, ranking_metrics, rating_metrics


def evaluate_model(
    model: Recommender,
    train_users: set[int] | np.ndarray,
    test: pd.DataFrame,
    users: pd.DataFrame,
    catalog_size: int,
    k: int = 20,
) -> dict[str, Any]:
    """RMSE, MAE, NDCG@10, Recall@20, coverage, overall, per gender and per age group, and
    separately for cold-start users."""
    pred = model.predict_ratings(test["user_id"].to_numpy(), test["movie_id"].to_numpy())
    test = test.assign(pred=pred)
    test_users = np.unique(test["user_id"].to_numpy())
    topk = model.recommend(test_users, k)
    known = set(int(u) for u in train_users)
    warm_mask = test["user_id"].isin(known)
    warm, cold = test[warm_mask], test[~warm_mask]
    out: dict[str, Any] = {}
    out.update(rating_metrics(warm["rating"].to_numpy(), warm["pred"].to_numpy()))
    out.update(ranking_metrics(topk, warm))
    out["coverage"] = coverage({u: v for u, v in topk.items() if u in known}, catalog_size)
    out["test_rows"] = len(warm)
    demo = users.set_index("user_id")
    groups: dict[str, dict[str, Any]] = {}
    for name, labels in (
        ("gender", warm["user_id"].map(demo["gender"])),
        ("age_group", age_group_label(warm["user_id"].map(demo["age"]).to_numpy(dtype=float))),
    ):
        groups[name] = {}
        for label, part in warm.groupby(labels):
            g = rating_metrics(part["rating"].to_numpy(), part["pred"].to_numpy())
            g.update(ranking_metrics(topk, part))
            groups[name][str(label)] = g
    out["by_group"] = groups
    if len(cold):
        c = rating_metrics(cold["rating"].to_numpy(), cold["pred"].to_numpy())
        c.update(ranking_metrics(topk, cold))
        c["users"] = int(cold["user_id"].nunique())
        out["cold_start"] = c
    return out
