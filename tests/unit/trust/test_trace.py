"""Tracing a prediction through every link, and each broken link named."""

from __future__ import annotations

import pandas as pd
import pytest

from movierec.core.errors import TraceError
from movierec.core.provenance import ModelRecord, PredictionRecord, append_model, append_predictions
from movierec.core.settings import Settings
from movierec.data.snapshot import snapshot_training_data
from movierec.trust.trace import lineage, trace
from tests.servicekit import make_bundle


@pytest.fixture
def chain(settings: Settings) -> Settings:
    inter = pd.DataFrame(
        {
            "user_id": [1, 2],
            "movie_id": ["a+1", "b+2"],
            "minutes": [3, 4],
            "rating": [4.0, float("nan")],
            "first_ts": pd.to_datetime(["2025-01-01", "2025-01-02"], utc=True),
            "last_ts": pd.to_datetime(["2025-01-01", "2025-01-02"], utc=True),
        }
    )
    snap = snapshot_training_data(settings, inter)
    make_bundle(settings, "v1", "one")
    append_model(
        settings,
        ModelRecord(
            "v1",
            "now",
            "abc123",
            "main",
            False,
            snap.data_id,
            "h",
            {"rmse": 0.9},
            {},
            {},
            "models/v1",
            "x",
        ),
    )
    append_predictions(settings, [PredictionRecord("req-1", "now", 1, "v1", "stable", "f", 0.1)])
    return settings


def test_a_full_trace(chain: Settings) -> None:
    t = trace(chain, "req-1")
    assert t.prediction is not None and t.prediction.user_id == 1
    assert t.model.git_commit == "abc123"
    assert t.bundle_verified and t.data_file_matches
    assert t.data.rows == 2


def test_each_broken_link_is_named(chain: Settings) -> None:
    with pytest.raises(TraceError, match="request nope"):
        trace(chain, "nope")
    with pytest.raises(TraceError, match="model v9"):
        lineage(chain, "v9")
    (chain.models_path / "v1" / "cold_start.json").write_text("{}")
    t = lineage(chain, "v1")
    assert not t.bundle_verified and "cold_start.json" in (t.bundle_problem or "")
    data_file = chain.path(t.data.path)
    data_file.write_bytes(data_file.read_bytes() + b"x")
    assert lineage(chain, "v1").data_file_matches is False
    data_file.unlink()
    with pytest.raises(TraceError, match="missing"):
        lineage(chain, "v1")
    (chain.models_path / "data_provenance.csv").unlink()
    with pytest.raises(TraceError, match="training data"):
        lineage(chain, "v1")
