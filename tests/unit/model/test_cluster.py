"""The in-process engine (tasks run when asked, a time budget keeps a prefix), partition sizes
from the memory budget, and the out-of-fold matrix: the same whatever order its fold tasks
run in."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError
from typing import Any

import numpy as np
import pytest

from movierec.core.errors import TrainingError
from movierec.model.training.cf_stage import build_index, fit_stage
from movierec.model.training.cluster import (
    BoosterData,
    ClusterPlan,
    InProcess,
    _partition_bounds,
    guarded,
    open_engine,
)
from movierec.model.training.rating_fit import rating_training_matrix
from tests.modelkit import FAST, block_data, block_ratings_frame

ADDRESS = "tcp://127.0.0.1:8786"


def test_in_process_tasks_run_when_asked_and_take_tasks_as_arguments() -> None:
    calls: list[int] = []

    def square(x: int) -> int:
        calls.append(x)
        return x * x

    engine = InProcess()
    a = engine.submit(square, 3)
    b = engine.submit(lambda v, w: v + w, a, 1)
    assert calls == []  # nothing ran yet
    assert engine.results([b, a]) == [10, 9]
    assert calls == [3]  # a ran once, for b, and was kept
    assert engine.map(square, [1, 2]) == [1, 4]


def test_a_passed_deadline_keeps_the_first_result_and_stops() -> None:
    engine = InProcess()
    ran: list[int] = []
    tasks = [engine.submit(ran.append, i) for i in range(3)]
    assert engine.results(tasks, deadline=time.monotonic() - 1) == [None]
    assert ran == [0]


def test_small_data_trains_in_process_without_a_server() -> None:
    engine = open_engine(ClusterPlan(from_rows=1000), rows=999)
    assert isinstance(engine, InProcess) and engine.where == "process"


def test_partition_rows_follow_the_worker_budget() -> None:
    plan = ClusterPlan(worker_memory_gb=1.0)
    assert plan.partition_rows(1024) == 2**30 // 4 // 1024
    assert plan.partition_rows(2**40) == 1


def test_partitions_are_cut_between_query_groups() -> None:
    qid = np.repeat(np.arange(5), 4)  # 5 groups of 4 rows
    data = BoosterData(np.zeros((20, 2)), np.zeros(20), ["a", "b"], qid=qid)
    bounds = _partition_bounds(data, ClusterPlan(), workers=3)  # 7 rows a part before the cut
    assert bounds[0][0] == 0 and bounds[-1][1] == 20
    assert all(a % 4 == 0 for a, _ in bounds) and len(bounds) >= 2
    assert [b for _, b in bounds[:-1]] == [a for a, _ in bounds[1:]]


class _Reversed(InProcess):
    """Runs a batch of tasks last first, as a cluster may."""

    def results(self, tasks: Sequence[Any], deadline: float | None = None) -> list[Any]:
        return [t.result() for t in reversed(tasks)][::-1]

    def map(self, fn: Callable[..., Any], items: Any, *shared: Any) -> list[Any]:
        return self.results([self.submit(fn, item, *shared) for item in items])


@pytest.mark.parametrize("engine", [InProcess(), _Reversed()], ids=["in-order", "reversed"])
def test_the_out_of_fold_matrix_does_not_depend_on_the_task_order(engine: InProcess) -> None:
    data = block_data(block_ratings_frame())
    params = FAST.replace(oof_folds=3)
    stage = fit_stage(data, build_index(data), params, threads=1)
    expected = rating_training_matrix(data, stage, params)
    got = rating_training_matrix(data, stage, params, engine)
    np.testing.assert_array_equal(got.X, expected.X)
    np.testing.assert_array_equal(got.y, expected.y)
    np.testing.assert_array_equal(got.case, expected.case)
    assert got.names == expected.names


@pytest.mark.parametrize("lost", [CancelledError("inputs lost"), ConnectionResetError("gone")])
def test_a_lost_worker_or_scheduler_is_a_training_error(lost: Exception) -> None:
    expected = r"fitting the folds: .* tcp://127\.0\.0\.1:8786 .* nothing was registered"
    with pytest.raises(TrainingError, match=expected), guarded("fitting the folds", ADDRESS):
        raise lost


def test_an_error_of_the_task_itself_is_not_hidden() -> None:
    with pytest.raises(ZeroDivisionError), guarded("fitting the folds", ADDRESS):
        raise ZeroDivisionError
