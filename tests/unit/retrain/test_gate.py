"""The retrainer's memory, `retrain_state.json`: one typed reader and writer, and a corrupt
file named rather than replaced."""

from __future__ import annotations

import json

import pytest

from movierec.core.errors import MovierecError
from movierec.core.settings import Settings
from movierec.retrain.gate import DataCounts, RetrainState, read_state, write_state


def test_the_state_reads_back_as_written(settings: Settings) -> None:
    assert read_state(settings) is None  # before the first retrain
    settings.data_path.mkdir(parents=True)
    write_state(settings, "v1", "promoted", DataCounts(10, 200, 150))
    state = read_state(settings)
    assert isinstance(state, RetrainState)
    assert (state.version, state.decision, state.counts) == (
        "v1",
        "promoted",
        DataCounts(10, 200, 150),
    )
    raw = json.loads(settings.retrain_state_file.read_text())
    assert raw["counts"] == {"users": 10, "interactions": 200, "ratings": 150}


@pytest.mark.parametrize(
    "text", ['{"version": "v1", "counts": {"users": 3', "[]", '{"counts": [1]}']
)
def test_a_corrupt_state_is_an_error_naming_the_file(settings: Settings, text: str) -> None:
    settings.data_path.mkdir(parents=True)
    settings.retrain_state_file.write_text(text)
    with pytest.raises(MovierecError, match="retrain_state"):
        read_state(settings)
