"""Registering a model: the bundle holds the model's files and description, and loads back
as the same kind of model (the rank-by-rating variant stays a variant)."""

from __future__ import annotations

import numpy as np
import pytest

from movierec.core.settings import Settings
from movierec.model.recommender import RankByRating, Recommender, TwoStageModel
from movierec.registry.bundles import load_metadata
from movierec.retrain.training import _register, load_trained_model


@pytest.mark.parametrize("variant", [False, True])
def test_a_registered_model_loads_back_as_the_same_kind(
    settings: Settings, block_model: TwoStageModel, variant: bool
) -> None:
    model: Recommender = RankByRating(block_model) if variant else block_model
    users = np.arange(22)  # 20 known, 2 new
    version, record = _register(
        settings, model, users=users, metrics={"rmse": 1.0}, data_id="d", holdout_sha="h", extra={}
    )
    meta = load_metadata(settings, version)
    assert meta["params"] == model.describe()["params"] == record.params
    assert meta["serving"]["users"] == 22
    again = load_trained_model(settings, version)
    assert type(again) is type(model)
    assert again.recommend([1, 21], 5) == model.recommend([1, 21], 5)
