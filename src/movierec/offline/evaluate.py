"""Offline evaluation: rating and ranking metrics, overall and per group. Works with any model
that has `predict_ratings(users, movies)` and `recommend(users, k)`; never imports Flask.

Ranking protocol: for each test user, the relevant movies are their test movies rated >= 4;
the list is the model's top-k among movies the user did not rate in training; NDCG@10 uses
binary gains. Users with no relevant test movie are not counted. Cold-start users (in the test
set but absent from training) are measured separately.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

AGE_BINS = [0, 18, 25, 35, 45, 56, 200]
AGE_LABELS = ["<18", "18-24", "25-34", "35-44", "45-55", "56+"]


def rating_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    err = np.asarray(y_pred, dtype=float) - np.asarray(y_true, dtype=float)
    if err.size == 0:
        return {"rmse": float("nan"), "mae": float("nan")}
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}


def _dcg(hits: np.ndarray) -> float:
    return float(np.sum(hits / np.log2(np.arange(2, hits.size + 2))))


def ranking_metrics(
    topk: Mapping[int, Sequence[str]],
    test: pd.DataFrame,
    k: int = 10,
    relevant_min_rating: int = 4,
    recall_k: int = 20,
) -> dict[str, float]:
    """NDCG@k, precision@k, recall@recall_k and MAP@k over users with a relevant test movie."""
    rel = test[test["rating"] >= relevant_min_rating].groupby("user_id")["movie_id"].apply(set)
    ndcg, prec, rec, ap = [], [], [], []
    for user, items in rel.items():
        lst = list(topk.get(int(str(user)), []))
        hits = np.array([m in items for m in lst[:k]], dtype=float)
        ideal = np.ones(min(k, len(items)))
        ndcg.append(_dcg(hits) / _dcg(ideal) if ideal.size else 0.0)
        prec.append(hits.sum() / k)
        rec.append(sum(m in items for m in lst[:recall_k]) / len(items))
        cum = np.cumsum(hits)
        ap.append(float(np.sum(cum * hits / np.arange(1, hits.size + 1)) / min(k, len(items))))
    n = len(ndcg)
    return {
        f"ndcg@{k}": float(np.mean(ndcg)) if n else float("nan"),
        f"precision@{k}": float(np.mean(prec)) if n else float("nan"),
        f"recall@{recall_k}": float(np.mean(rec)) if n else float("nan"),
        f"map@{k}": float(np.mean(ap)) if n else float("nan"),
        "ranking_users": n,
    }


def coverage(topk: Mapping[int, Sequence[str]], catalog_size: int) -> float:
    """Share of the catalog that appears in at least one list."""
    seen = {m for lst in topk.values() for m in lst}
    return len(seen) / catalog_size if catalog_size else 0.0


def age_group(age: pd.Series) -> pd.Series:
    return pd.cut(age, bins=AGE_BINS, labels=AGE_LABELS, right=False).astype(str)


def evaluate_model(
    model: Any,
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
        ("age_group", age_group(warm["user_id"].map(demo["age"]))),
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
