"""Fitting a model from data: `fit_two_stage` and `fit_rank_by_rating` make the models that
`model.recommender` defines (training code: serving never imports it, an import-linter
contract)."""

from __future__ import annotations

import logging
import time

import numpy as np

from movierec.model.params import ModelParams
from movierec.model.recommender import RankByRating, TwoStageModel, TwoStageParts
from movierec.model.training.cf_stage import build_index, fit_stage
from movierec.model.training.cluster import ClusterPlan, Engine, InProcess
from movierec.model.training.cold_lists import fit_cold_start
from movierec.model.training.dataset import TrainingData
from movierec.model.training.lambdamart import fit_ranker
from movierec.model.training.rating_fit import fit_rating_model

log = logging.getLogger(__name__)


def fit_two_stage(
    data: TrainingData,
    params: ModelParams | None = None,
    *,
    threads: int = 2,
    engine: Engine | None = None,
) -> TwoStageModel:
    """The two-stage model of `data`: the CF stage and feature base over every user and movie
    the data names, the stacked rating model on out-of-fold features, the LambdaMART ranker on
    a split of the training data, and the cold-start lists. The parallel parts (out-of-fold
    fits, boosters) run on `engine` (default: in this process)."""
    p = params or ModelParams()
    engine = engine or InProcess(ClusterPlan(threads=threads))
    start = time.perf_counter()
    laps = [start]  # the end of each step, for the steps' wall times
    stage = fit_stage(data, build_index(data), p, threads)
    laps.append(time.perf_counter())
    rating = fit_rating_model(data, stage, p, threads, engine)
    laps.append(time.perf_counter())
    ranker = fit_ranker(data, p, threads, engine=engine)
    laps.append(time.perf_counter())
    parts = TwoStageParts(stage, rating, ranker, fit_cold_start(data))
    steps = dict(zip(("cf_stage", "rating_model", "ranker"), np.diff(laps), strict=True))
    log.info("fitted on %s: %s", engine.where, {k: round(v, 1) for k, v in steps.items()})
    fit_info = {
        "rows": len(data.ratings),
        "interactions": len(data.interactions),
        "rating_model": rating.info,
        "ranker": ranker.info,
        "seconds": round(time.perf_counter() - start, 2),
        "step_seconds": {k: round(float(v), 2) for k, v in steps.items()},
        "engine": engine.where,
    }
    return TwoStageModel(p, parts, threads=threads, fit_info=fit_info)


def fit_rank_by_rating(
    data: TrainingData, params: ModelParams | None = None, *, threads: int = 2
) -> RankByRating:
    """The deliberately poor variant: a two-stage model whose lists rank by rating alone."""
    return RankByRating(fit_two_stage(data, params, threads=threads))
