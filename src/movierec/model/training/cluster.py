"""Where training's parallel work runs: an `Engine`.

- `InProcess` (the default for small data): no server, no copies; `map` is a loop and
  `submit` runs when its result is first asked for, so ml-100k trains as it always did.
- `DaskEngine`: a `distributed.Client`, to an existing scheduler (`ClusterPlan.scheduler`,
  `MOVIEREC_DASK_SCHEDULER`) or to a `LocalCluster` of this machine's cores, each worker
  within `ClusterPlan.worker_memory_gb`. Big arguments are scattered once to every worker
  (`share`); a booster with many rows trains on every worker with `xgboost.dask`.

A worker or the scheduler lost mid-job is a `TrainingError` naming the scheduler and the step:
the caller writes nothing (a bundle is written to a temporary folder and renamed, so a failed
job leaves no bundle and changes no routing). Dask first re-runs a lost worker's tasks on the
others: a job recovers when enough of the cluster is left.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import xgboost as xgb

from movierec.core.errors import TrainingError

log = logging.getLogger(__name__)

PARTITION_SHARE = 0.25  # of a worker's budget one partition may take (input, output, copies)
POLL_SECONDS = 1.0  # how often a wait checks that the cluster still has workers
NO_WORKER_SECONDS = 30.0  # a job with no worker for this long fails
CONNECT_SECONDS = 20.0
Where = Literal["process", "local", "remote"]  # where tasks run: here, this machine, elsewhere


@dataclass(frozen=True)
class ClusterPlan:
    """Which engine to use and how big its pieces are (from the training settings)."""

    scheduler: str = ""  # tcp://HOST:PORT: an existing cluster; "": in-process or a LocalCluster
    from_rows: int = 2_000_000  # ratings from which a LocalCluster is started
    workers: int = 0  # the LocalCluster's worker processes (0: the machine's cores)
    worker_memory_gb: float = 4.0  # each worker's memory budget
    xgb_from_rows: int = 1_000_000  # a booster with at least this many rows uses xgboost.dask
    threads: int = 2  # threads of one in-process task (a booster, ALS)

    def partition_rows(self, row_bytes: int) -> int:
        """Rows per partition, so that a partition takes `PARTITION_SHARE` of a worker's
        budget."""
        budget = self.worker_memory_gb * 2**30 * PARTITION_SHARE
        return max(1, int(budget // max(row_bytes, 1)))


@dataclass(frozen=True)
class BoosterData:
    """The rows of one booster: features, labels, and optionally the margin boosting starts
    from and the query group of each row (rows of a group are adjacent)."""

    X: np.ndarray
    y: np.ndarray
    names: list[str]
    margin: np.ndarray | None = None
    qid: np.ndarray | None = None

    def dmatrix(self) -> xgb.DMatrix:
        d = xgb.DMatrix(self.X, self.y, feature_names=self.names, base_margin=self.margin)
        if self.qid is not None:
            d.set_group(np.bincount(self.qid)[np.unique(self.qid)])
        return d

    def take(self, rows: np.ndarray) -> BoosterData:
        return BoosterData(
            self.X[rows],
            self.y[rows],
            self.names,
            None if self.margin is None else self.margin[rows],
            None if self.qid is None else self.qid[rows],
        )


@dataclass(frozen=True)
class BoosterRun:
    """How one booster trains: XGBoost's parameters, rounds, and early stopping on `valid`."""

    params: dict[str, Any]
    rounds: int
    valid: BoosterData | None = None
    early_stopping: int | None = None


class _Deferred:
    """An in-process task: run when its result is first asked for, then kept."""

    def __init__(self, fn: Callable[..., object], args: tuple[object, ...]) -> None:
        self._fn, self._args, self._done = fn, args, False
        self._value: object = None

    def result(self) -> Any:
        if not self._done:
            args = [a.result() if isinstance(a, _Deferred) else a for a in self._args]
            self._value, self._done = self._fn(*args), True
            self._fn, self._args = _nothing, ()
        return self._value


def _nothing() -> None:
    return None


class Engine(ABC):
    """What training code asks of an engine."""

    plan: ClusterPlan
    where: Where
    workers: int  # tasks that can run at once
    task_threads: int  # threads one task may use

    def share(self, value: Any) -> Any:
        """`value` as an argument of many tasks (in-process: itself)."""
        return value

    @abstractmethod
    def submit(self, fn: Callable[..., object], *args: object) -> Any:
        """A task; its arguments may be other tasks (their results are passed)."""

    @abstractmethod
    def results(self, tasks: Sequence[Any], deadline: float | None = None) -> list[Any]:
        """The tasks' results in order; past `deadline` (time.monotonic), those of the tasks
        finished by then that come before the first unfinished one (always the first)."""

    def map(self, fn: Callable[..., object], items: Iterable[object], *shared: object) -> list[Any]:
        """`fn(item, *shared)` for every item, in order."""
        return self.results([self.submit(fn, item, *shared) for item in items])

    def train_booster(self, data: BoosterData, run: BoosterRun) -> xgb.Booster:
        """A booster trained here (the in-process engine, or too few rows for the cluster)."""
        evals = [(run.valid.dmatrix(), "valid")] if run.valid is not None else []
        return xgb.train(
            run.params,
            data.dmatrix(),
            run.rounds,
            evals=evals,
            early_stopping_rounds=run.early_stopping,
            verbose_eval=False,
        )

    def close(self) -> None:  # noqa: B027 - nothing to release in-process
        """Release what the engine started."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InProcess(Engine):
    """Every task in this process, one after the other."""

    where: Where = "process"

    def __init__(self, plan: ClusterPlan | None = None) -> None:
        self.plan = plan or ClusterPlan()
        self.workers, self.task_threads = 1, self.plan.threads

    def submit(self, fn: Callable[..., object], *args: object) -> _Deferred:
        return _Deferred(fn, args)

    def results(self, tasks: Sequence[Any], deadline: float | None = None) -> list[Any]:
        out: list[Any] = []
        for task in tasks:
            if out and deadline is not None and time.monotonic() > deadline:
                break
            out.append(task.result())
        return out


def open_engine(plan: ClusterPlan, rows: int) -> Engine:
    """The engine for `rows` ratings: the named cluster, a LocalCluster from
    `plan.from_rows`, else in-process."""
    if plan.scheduler:
        return DaskEngine(plan)
    if rows >= plan.from_rows:
        return DaskEngine(plan)
    return InProcess(plan)


@contextlib.contextmanager
def guarded(step: str, address: str) -> Iterator[None]:
    """Turns a lost worker or scheduler into a `TrainingError` naming `step`."""
    from distributed import KilledWorker
    from distributed.comm.core import CommClosedError

    try:
        yield
    # CancelledError: a task whose input (scattered data, another task's result) died with
    # its worker, the only one that held it, is cancelled
    except (KilledWorker, CancelledError, CommClosedError, OSError) as exc:
        raise TrainingError(
            f"{step}: the Dask cluster at {address} lost a worker or stopped answering "
            f"({type(exc).__name__}: {str(exc)[:200]}); nothing was registered"
        ) from exc


class DaskEngine(Engine):
    """Tasks on a Dask cluster: the plan's scheduler, else a LocalCluster on this machine."""

    def __init__(self, plan: ClusterPlan) -> None:
        # distributed is imported here, not at the top: in-process training never loads it
        from distributed import Client, LocalCluster

        self.plan, self._cluster = plan, None
        if plan.scheduler:
            self.where, address = "remote", plan.scheduler
            with guarded("connecting", address):
                self.client = Client(address, timeout=f"{CONNECT_SECONDS}s")
        else:
            n = plan.workers or os.cpu_count() or 1
            self.where = "local"
            self._cluster = LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                memory_limit=f"{plan.worker_memory_gb}GiB",
                dashboard_address=None,
                silence_logs=logging.WARNING,
            )
            self.client = Client(self._cluster)
            address = self._cluster.scheduler_address
        self.address = address
        nthreads = self.client.nthreads()
        self.workers = max(1, sum(nthreads.values()))
        cores = os.cpu_count() or 1
        self.task_threads = max(1, cores // self.workers) if self._cluster else plan.threads
        log.info("training on Dask at %s: %d worker slots", address, self.workers)

    def share(self, value: Any) -> Any:
        with guarded("sharing data with the workers", self.address):
            [future] = self.client.scatter([value], broadcast=True, hash=False)
        return future

    def submit(self, fn: Callable[..., object], *args: object) -> Any:
        return self.client.submit(fn, *args, pure=False)

    def results(self, tasks: Sequence[Any], deadline: float | None = None) -> list[Any]:
        step = getattr(tasks[0], "key", "tasks") if tasks else "tasks"
        with guarded(f"running {step}", self.address):
            self._wait(tasks, deadline)
            done: list[Any] = []
            for task in tasks:
                if task.status != "finished" and done:
                    break
                done.append(task)
            self.client.cancel([t for t in tasks if t not in done])
            return list(self.client.gather(done))

    def _wait(self, tasks: Sequence[Any], deadline: float | None) -> None:
        """Until every task is done, `deadline` passed (the first task is still waited for)
        or the cluster had no worker for `NO_WORKER_SECONDS`."""
        from distributed import wait

        alone_since: float | None = None
        while any(not t.done() for t in tasks):
            if deadline is not None and time.monotonic() > deadline and tasks[0].done():
                return
            with contextlib.suppress(TimeoutError):
                wait(tasks, timeout=POLL_SECONDS)
            if self.client.nthreads():
                alone_since = None
            elif alone_since is None:
                alone_since = time.monotonic()
            elif time.monotonic() - alone_since > NO_WORKER_SECONDS:
                raise TrainingError(
                    f"the Dask cluster at {self.address} has had no worker for "
                    f"{NO_WORKER_SECONDS:.0f} s; nothing was registered"
                )

    def train_booster(self, data: BoosterData, run: BoosterRun) -> xgb.Booster:
        """xgboost.dask on every worker from `plan.xgb_from_rows` rows, else here."""
        if len(data.y) < self.plan.xgb_from_rows:
            return super().train_booster(data, run)
        import xgboost.dask as dxgb
        from xgboost.collective import Config

        with guarded("training a booster on the cluster", self.address):
            train = self._dask_matrix(data)
            evals = [(self._dask_matrix(run.valid), "valid")] if run.valid is not None else None
            out = dxgb.train(
                self.client,
                run.params | {"nthread": self.task_threads},
                train,
                run.rounds,
                evals=evals,
                early_stopping_rounds=run.early_stopping,
                verbose_eval=False,
                coll_cfg=Config(timeout=600),
            )
        booster: xgb.Booster = out["booster"]
        return booster

    def _dask_matrix(self, data: BoosterData) -> Any:
        """A DaskDMatrix of `data`, its rows scattered in partitions within the budget (a
        query group never split)."""
        import dask.array as da
        from xgboost.dask import DaskDMatrix

        bounds = _partition_bounds(data, self.plan, self.workers)
        columns = {"data": data.X, "label": data.y, "base_margin": data.margin, "qid": data.qid}
        arrays: dict[str, Any] = {}
        for name, values in columns.items():
            if values is None:
                continue
            parts = [values[a:b] for a, b in bounds]
            futures = self.client.scatter(parts, hash=False)
            pieces = [
                da.from_delayed(f, shape=p.shape, dtype=p.dtype)
                for f, p in zip(futures, parts, strict=True)
            ]
            arrays[name] = da.concatenate(pieces)
        return DaskDMatrix(self.client, feature_names=data.names, **arrays)

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def _partition_bounds(data: BoosterData, plan: ClusterPlan, workers: int) -> list[tuple[int, int]]:
    """Row ranges: at least one per worker, none over the budget, cut between query groups."""
    n = len(data.y)
    size = min(plan.partition_rows(data.X.shape[1] * data.X.itemsize), math.ceil(n / workers))
    cuts = list(range(0, n, max(size, 1)))[1:]
    if data.qid is not None:  # move each cut to the start of the group it falls in
        starts = np.flatnonzero(np.r_[True, data.qid[1:] != data.qid[:-1]])
        cuts = sorted({int(starts[np.searchsorted(starts, c, side="right") - 1]) for c in cuts})
        cuts = [c for c in cuts if c > 0]
    edges = [0, *cuts, n]
    return list(itertools.pairwise(edges))
