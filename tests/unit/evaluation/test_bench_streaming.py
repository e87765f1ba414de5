"""The streaming protocol's replay and scoring (`evaluation/bench_streaming.py`) on a tiny
hand-made stream, every figure computed by hand."""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest


def _module() -> ModuleType:
    path = Path(__file__).resolve().parents[3] / "evaluation" / "bench_streaming.py"
    spec = importlib.util.spec_from_file_location("bench_streaming", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bs = _module()


def _at(day: int, hour: int) -> pd.Timestamp:
    return pd.Timestamp(2000, 1, day, hour, tz="UTC")


def _after() -> pd.DataFrame:
    """User 1 rates a, b, c; user 2 rates x, y; given out of order."""
    rows = [
        (1, "c", _at(2, 5)),
        (2, "x", _at(1, 2)),
        (1, "a", _at(1, 1)),
        (2, "y", _at(2, 4)),
        (1, "b", _at(1, 3)),
    ]
    return pd.DataFrame(rows, columns=["user_id", "movie_id", "timestamp"]).assign(rating=4)


def test_stream_orders_by_time_and_counts_each_users_earlier_events() -> None:
    events = bs.stream(_after())
    assert list(events["movie_id"]) == ["a", "x", "b", "y", "c"]
    assert list(events["since"]) == [0, 0, 1, 1, 2]


def test_buckets() -> None:
    since = np.array([0, 1, 4, 5, 19, 20, 300])
    assert list(bs.bucket(since)) == ["0", "1-4", "1-4", "5-19", "5-19", "20+", "20+"]


def test_score_of_one_list() -> None:
    assert bs.score(["q", "t"], "t") == (1.0, pytest.approx(1 / math.log2(3)))
    assert bs.score(["t"], "t") == (1.0, 1.0)
    assert bs.score(["q"], "t") == (0.0, 0.0)
    assert bs.score([*"abcdefghij", "t"], "t") == (0.0, 0.0)  # 11th: outside the top 10


def test_replay_gives_each_arm_the_earlier_events_only_and_scores_by_hand() -> None:
    events = bs.stream(_after())
    seen: list[Any] = []

    def recording(moment: Any) -> Sequence[str]:
        seen.append(moment)
        return ["z", "b", "c", "y"]

    table = bs.replay(events, np.arange(5), {"echo": recording})
    assert [list(m.history) for m in seen] == [[], [], ["a"], ["x"], ["a", "b"]]
    assert [m.user_id for m in seen] == [1, 2, 1, 2, 1]
    assert seen[4].history_times == [_at(1, 1), _at(1, 3)]
    assert seen[4].at == _at(2, 5)
    # targets a, x, b (2nd), y (4th), c (3rd)
    assert list(table["echo_hit"]) == [0, 0, 1, 1, 1]
    expected = [0, 0, 1 / math.log2(3), 1 / math.log2(5), 0.5]
    assert list(table["echo_ndcg"]) == pytest.approx(expected)
    assert list(table["bucket"]) == ["0", "0", "1-4", "1-4", "1-4"]
    # a sample scores fewer events, histories unchanged
    assert list(bs.replay(events, np.array([4]), {"echo": recording})["since"]) == [2]
    assert bs.first_days(events, 1) == 3 and bs.first_days(events, None) == 5
    assert list(seen[-1].history) == ["a", "b"]


class _Model:
    """Lists of a fixed order; from a history: the history's movies reversed."""

    def recommend(self, users: np.ndarray, k: int) -> dict[int, list[str]]:
        return {int(u): ["a", "b", "c", "d"][:k] for u in users}

    def recommend_from_history(self, user_id: int, history: Sequence[str], k: int) -> list[str]:
        return [f"after-{m}" for m in reversed(history)][:k]


def test_precomputed_unseen_and_fold_in_as_the_service_answers() -> None:
    lists = bs.Precomputed.of(_Model(), np.array([1]))
    before = bs.Moment(1, [], [], _at(1, 1))
    later = bs.Moment(1, ["b"], [_at(1, 1)], _at(1, 2))
    assert lists.top(later) == ["a", "b", "c", "d"]
    assert lists.unseen(later) == ["a", "c", "d"]
    fold_in = bs.fold_in_arm(_Model(), lists)
    assert fold_in(before) == ["a", "b", "c", "d"]  # no event since T: the precomputed list
    assert fold_in(later) == ["after-b"]


def test_daily_models_refit_on_the_ratings_before_each_day_and_fold_in_that_day() -> None:
    events = bs.stream(_after())
    fitted: list[pd.DataFrame] = []

    def fit(ratings: pd.DataFrame) -> _Model:
        fitted.append(ratings)
        return _Model()

    before = pd.DataFrame({"user_id": [9], "movie_id": ["o"], "timestamp": [_at(1, 0)]})
    daily = bs.DailyModels(fit, before, events, np.array([1, 2]))
    daily.start(_Model(), bs.Precomputed.of(_Model(), np.array([1, 2])), _at(1, 1))
    day_one = bs.Moment(1, ["a"], [_at(1, 1)], _at(1, 3))
    assert daily.fold_in(day_one) == ["after-a"]
    assert fitted == []  # the first day's model is the model at T
    day_two = bs.Moment(1, ["a", "b"], [_at(1, 1), _at(1, 3)], _at(2, 5))
    assert daily.fold_in(day_two) == ["a", "b", "c", "d"]  # nothing yet on day two
    assert sorted(fitted[0]["movie_id"]) == ["a", "b", "o", "x"]  # all before day two
    daily.precomputed(bs.Moment(2, ["x"], [_at(1, 2)], _at(2, 6)))
    assert len(fitted) == 1  # one refit per day


def test_user_bootstrap_and_ratio() -> None:
    table = pd.DataFrame(
        {
            "user_id": [1, 1, 2, 3],
            "a_hit": [1.0, 1.0, 0.0, 1.0],
            "b_hit": [0.5, 0.5, 0.5, 0.5],
        }
    )
    draws = bs.user_bootstrap(table, ["a_hit", "b_hit"], draws=200)
    assert draws.shape == (200, 2)
    assert np.all(draws[:, 1] == 0.5)  # a constant column stays constant
    assert draws[:, 0].min() >= 0.0 and draws[:, 0].max() == 1.0  # user 2 left out: all hits
    result = bs.ratio(table, "a", "b")
    assert result["ratio"] == pytest.approx(0.75 / 0.5)
    low, high = result["ci"]
    assert low <= 1.5 <= high
