"""ModelParams: typed defaults, values that cannot work refused by name, saved and read back."""

from __future__ import annotations

import pytest

from movierec.core.errors import ConfigError
from movierec.model.params import ModelParams


def test_params_round_trip_through_a_dictionary() -> None:
    params = ModelParams(mf_factors=16, genre_diversity=0.3, seed=7)
    assert ModelParams.from_dict(params.as_dict()) == params
    assert params.replace(seed=8).seed == 8 and params.seed == 7  # frozen: a new object


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ranker_split": "sideways"}, "ranker_split='sideways'"),
        ({"longtail_min_share": 1.5}, "longtail_min_share=1.5"),
        ({"candidates": 0}, "candidates=0"),
        ({"rp3_candidates": -1}, "rp3_candidates=-1"),
        ({"rp3_neighbours": 0}, "rp3_neighbours=0"),
        ({"oof_folds": 1}, "oof_folds=1"),
        ({"fold_in_recent_weight": -0.5}, "fold_in_recent_weight=-0.5"),
        ({"fold_in_recent_movies": -1}, "fold_in_recent_movies=-1"),
    ],
)
def test_a_value_that_cannot_work_is_refused_by_name(
    change: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        ModelParams(**change)  # type: ignore[arg-type]


def test_an_unknown_saved_parameter_is_named() -> None:
    with pytest.raises(ConfigError, match="mf_fators"):
        ModelParams.from_dict({"mf_fators": 3})
