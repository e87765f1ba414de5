"""Metric functions: pure, over plain arrays and frames, checked against hand-computed values.

Rating: RMSE, MAE. Ranking (per user, then averaged over users with a relevant test movie;
relevant = rated >= 4 in the test set): NDCG@k with binary gains, precision@k, recall@k, MAP@k.
Catalog: coverage. `headline` keeps the numeric entries of a metrics dictionary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


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


def headline(metrics: Mapping[str, object]) -> dict[str, float]:
    """The numeric entries of a metrics dictionary (nested groups left out), as floats."""
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
