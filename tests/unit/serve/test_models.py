"""`ServingModel.load` gives the C heap's freed memory back to the system once a bundle is
loaded: XGBoost parses each booster's JSON into a large temporary document that glibc would
otherwise keep in every worker."""

from __future__ import annotations

import platform

import numpy as np
import pytest

from movierec.core.settings import Settings
from movierec.model.recommender import TwoStageModel
from movierec.serve import models
from tests.servicekit import make_model_bundle


def test_loading_a_model_releases_the_freed_heap(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, block_model: TwoStageModel
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(models, "release_freed_heap", lambda: calls.append(1) or True)
    path = make_model_bundle(settings, "v1", block_model, np.arange(20))
    model = models.ServingModel.load(path)
    assert model.fold is not None and calls == [1]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_the_heap_is_released_on_glibc() -> None:
    assert models.release_freed_heap() is True
