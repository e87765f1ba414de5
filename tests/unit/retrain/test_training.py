"""Registering a model: the bundle holds the model's files and description, and loads back
as the same kind of model (the rank-by-rating variant stays a variant)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from movierec.core.settings import Settings
from movierec.data.events import format_rate, format_watch
from movierec.data.ingest import ingest
from movierec.data.replay import replay
from movierec.model.recommender import RankByRating, Recommender, TwoStageModel
from movierec.registry.bundles import load_metadata
from movierec.retrain.training import Candidate, _register, load_trained_model, train_candidate

UNKNOWN_TITLE = "amelie+from+montmartre+2001"  # not in ml-100k's catalog


@pytest.mark.parametrize("variant", [False, True])
def test_a_registered_model_loads_back_as_the_same_kind(
    settings: Settings, block_model: TwoStageModel, variant: bool
) -> None:
    model: Recommender = RankByRating(block_model) if variant else block_model
    users = np.arange(22)  # 20 known, 2 new
    candidate = Candidate(
        model, users=users, metrics={"rmse": 1.0}, data_id="d", holdout_sha="h", extra={}
    )
    version, record = _register(settings, candidate)
    meta = load_metadata(settings, version)
    assert meta["params"] == model.describe()["params"] == record.params
    assert meta["serving"]["users"] == 22
    again = load_trained_model(settings, version)
    assert type(again) is type(model)
    assert again.recommend([1, 21], 5) == model.recommend([1, 21], 5)


def test_events_of_a_title_the_catalog_does_not_know_are_ingested_and_trained_on(
    ml100k_settings: Settings,
) -> None:
    """A stream title MovieLens does not have (here a slug spelled with the accent folded
    differently) is neither quarantined nor fatal: the refresh report counts it as an unknown
    title, and training succeeds and knows the movie (with unknown genres and year)."""
    s = ml100k_settings.replace(tune_iterations=1, tune_seconds=5.0, n_threads=1)
    replay(s, "ml-100k", s.data.event_source, end=0.03)
    t = pd.Timestamp("1998-05-01T00:00:00Z").to_pydatetime()
    lines = [format_watch(t, u, UNKNOWN_TITLE, 3) for u in (1, 2, 3)]
    lines += [format_rate(t, u, UNKNOWN_TITLE, 4) for u in (1, 2, 3)]
    with s.path(s.data.event_source).open("a") as f:
        f.write("".join(line + "\n" for line in lines))
    result = ingest(s)
    assert result.quarantined == 0
    report = json.loads(Path(result.report_path).read_text())
    assert report["unknown_titles"]["titles"] == 1
    assert report["unknown_titles"]["examples"] == [UNKNOWN_TITLE]
    trained = train_candidate(s, tune=True)  # as the cron retrain does
    model = load_trained_model(s, trained.version)
    assert isinstance(model, TwoStageModel)
    assert model.stage.index.midx(np.array([UNKNOWN_TITLE]))[0] >= 0  # in the model's index
    assert UNKNOWN_TITLE in set(model.known_movies.tolist())  # with its watches
    pred = model.predict_ratings(np.array([1, 999_999]), np.array([UNKNOWN_TITLE] * 2))
    assert np.isfinite(pred).all()
