"""Metric functions against values computed by hand (as microsoft/recommenders'
`test_python_evaluation.py` does)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from movierec.offline.metric_functions import coverage, headline, ranking_metrics, rating_metrics

TOL = 1e-4


def test_rmse_and_mae_by_hand() -> None:
    m = rating_metrics(np.array([1, 2, 3, 4]), np.array([2.0, 2.0, 5.0, 4.0]))
    assert m["rmse"] == pytest.approx(math.sqrt(5 / 4), TOL)  # errors 1, 0, 2, 0
    assert m["mae"] == pytest.approx(3 / 4, TOL)
    assert rating_metrics(np.array([3, 3]), np.array([3.0, 3.0])) == {"rmse": 0.0, "mae": 0.0}
    assert all(math.isnan(v) for v in rating_metrics(np.array([]), np.array([])).values())


def _test_set() -> pd.DataFrame:
    rows = [
        (1, "a", 5),
        (1, "c", 4),
        (1, "b", 2),  # not relevant (< 4)
        (2, "x", 4),
        (3, "p", 3),  # user 3 has nothing relevant: not counted
        (4, "q", 5),  # user 4 gets no list
    ]
    return pd.DataFrame(rows, columns=["user_id", "movie_id", "rating"])


def test_ranking_metrics_by_hand() -> None:
    topk = {1: ["a", "b", "c", "d"], 2: ["y", "z", "w", "x"], 3: ["p"]}
    m = ranking_metrics(topk, _test_set(), k=3, recall_k=4)
    # user 1: hits at 1 and 3 -> DCG 1 + 1/log2(4) = 1.5, ideal (2 relevant) 1 + 1/log2(3)
    ndcg_1 = 1.5 / (1 + 1 / math.log2(3))
    # user 2: its one relevant movie is 4th: no hit in the top 3, found within 4
    assert m["ndcg@3"] == pytest.approx(ndcg_1 / 3, TOL)  # 0.30657
    assert m["precision@3"] == pytest.approx((2 / 3) / 3, TOL)
    assert m["recall@4"] == pytest.approx((1 + 1 + 0) / 3, TOL)
    # user 1: precision at the hits 1/1 and 2/3, over min(3, 2 relevant)
    assert m["map@3"] == pytest.approx(((1 + 2 / 3) / 2) / 3, TOL)
    assert m["ranking_users"] == 3


def test_perfect_and_hitless_lists() -> None:
    test = _test_set()
    perfect = {1: ["a", "c"], 2: ["x"], 4: ["q"]}
    m = ranking_metrics(perfect, test, k=10)
    assert (m["ndcg@10"], m["recall@20"], m["map@10"]) == (1.0, 1.0, 1.0)
    assert m["precision@10"] == pytest.approx((2 / 10 + 1 / 10 + 1 / 10) / 3, TOL)
    none = ranking_metrics({1: ["z"], 2: ["z"], 4: ["z"]}, test, k=10)
    assert none["ndcg@10"] == none["recall@20"] == none["map@10"] == 0.0
    # one relevant movie second: DCG 1/log2(3) over an ideal of 1
    single = ranking_metrics({2: ["y", "x"]}, test[test.user_id == 2], k=10)
    assert single["ndcg@10"] == pytest.approx(1 / math.log2(3), TOL)  # 0.63093
    assert math.isnan(ranking_metrics({}, test[test.user_id == 3])["ndcg@10"])


def test_coverage_and_headline() -> None:
    assert coverage({1: ["a", "b"], 2: ["b", "c"]}, 10) == pytest.approx(0.3)
    assert coverage({1: ["a"]}, 0) == 0.0
    assert headline({"rmse": 1, "ok": True, "by_group": {"x": 1}, "n": 2.5}) == {
        "rmse": 1.0,
        "n": 2.5,
    }
