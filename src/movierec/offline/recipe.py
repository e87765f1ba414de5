"""Fitting a model as the service does: parameters and tuning budget from the settings, the
training rows capped to the most recent, tuned by randomized search, then fitted. Used by the
training job and by `movierec offline-eval`, so both train the same way."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from movierec.core.settings import Settings
from movierec.model.params import ModelParams
from movierec.model.recommender import TwoStageModel
from movierec.model.training.cluster import ClusterPlan, Engine, InProcess
from movierec.model.training.dataset import TrainingData
from movierec.model.training.fit import fit_two_stage
from movierec.model.training.tune import TuningBudget, randomized_search


@dataclass
class Fitted:
    model: TwoStageModel
    seconds: float  # tuning and fitting
    trials: list[dict[str, object]] = field(default_factory=list)  # the tuning trials


def model_params(settings: Settings) -> ModelParams:
    """The default parameters, with the settings' seed, ranker split and re-ranking knobs."""
    t = settings.training
    return ModelParams(
        seed=t.seed,
        ranker_split=t.ranker_split,
        longtail_min_share=t.longtail_min_share,
        genre_diversity=t.genre_diversity,
    )


def tuning_budget(settings: Settings) -> TuningBudget:
    t = settings.training
    return TuningBudget(t.tune_iterations, t.tune_seconds, t.seed, t.n_threads, t.tune_max_rows)


def cluster_plan(settings: Settings) -> ClusterPlan:
    """Where training runs (model.training.cluster), from the training settings."""
    t = settings.training
    return ClusterPlan(
        t.dask_scheduler,
        t.dask_from_rows,
        t.dask_workers,
        t.dask_worker_memory_gb,
        t.dask_xgb_from_rows,
        t.n_threads,
    )


def fit_model(
    data: TrainingData, settings: Settings, *, tune: bool = True, engine: Engine | None = None
) -> Fitted:
    """A fitted two-stage model (tuned unless `tune` is False), its parallel parts on
    `engine` (default: in this process)."""
    start = time.perf_counter()
    engine = engine or InProcess(cluster_plan(settings))
    # Cap: at most max_train_rows interactions, the most recent
    data = data.latest(settings.training.max_train_rows)
    # Tune: randomized search on a validation split of the training data
    params, trials = model_params(settings), list[dict[str, object]]()
    if tune:
        params, trials = randomized_search(data, params, tuning_budget(settings), engine)
    # Fit
    model = fit_two_stage(data, params, threads=settings.training.n_threads, engine=engine)
    return Fitted(model, round(time.perf_counter() - start, 2), trials)
