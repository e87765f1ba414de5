"""Fitting as the service does: parameters and budget from the settings, rows capped."""

from __future__ import annotations

import pandas as pd

from movierec.core.settings import Settings
from movierec.offline.recipe import fit_model, model_params, tuning_budget
from tests.modelkit import block_data


def test_params_and_budget_come_from_the_settings(settings: Settings) -> None:
    s = settings.replace(seed=9, genre_diversity=0.4, tune_iterations=3, tune_seconds=5.0)
    params = model_params(s)
    assert (params.seed, params.genre_diversity, params.longtail_min_share) == (9, 0.4, 0.0)
    budget = tuning_budget(s)
    assert (budget.iterations, budget.seconds, budget.seed) == (3, 5.0, 9)


def test_an_untuned_fit_keeps_the_latest_rows_only(
    settings: Settings, block_ratings: pd.DataFrame
) -> None:
    s = settings.replace(max_train_rows=100)
    fitted = fit_model(block_data(block_ratings), s, tune=False)
    assert fitted.trials == []
    assert fitted.model.fit_info["interactions"] == 100
    assert fitted.model.params == model_params(s)
