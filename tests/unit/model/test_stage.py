"""The CF stage: CF features of known and unknown pairs, and its arrays saved apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from movierec.model.cf import Pairs
from movierec.model.recommender import TwoStageModel
from movierec.model.stage import CFStage, cf_features, rating_cf_features
from tests.modelkit import file_mapped


def test_cf_features_of_an_unknown_side_are_priors_or_nan(block_model: TwoStageModel) -> None:
    stage = block_model.stage
    pairs = Pairs.rows(np.array([0, -1, 0]), np.array([1, 1, -1]))
    f = cf_features(stage, pairs)
    mf = stage.mf
    assert f["mf_pred"][0] == pytest.approx(mf.mu + mf.bu[0] + mf.bi[1] + mf.P[0] @ mf.Q[1])
    assert f["mf_pred"][1] == pytest.approx(mf.mu + mf.bi[1])  # new user: mean + movie bias
    assert f["mf_pred"][2] == pytest.approx(mf.mu + mf.bu[0])  # new movie: mean + user bias
    for name in ("mf_dot", "als_score"):
        assert not np.isnan(f[name][0]) and np.isnan(f[name][1:]).all()
    assert np.isnan(f["mf_bu"][1]) and np.isnan(f["mf_bi"][2])
    assert "als_score" not in rating_cf_features(stage, pairs)


def test_the_stage_saves_one_npy_file_per_array(block_model: TwoStageModel, tmp_path: Path) -> None:
    stage = block_model.stage
    names, scalars = stage.save(tmp_path)
    assert all(n.endswith(".npy") for n in names)
    assert not [n for n in names if "ease_B" in n]  # EASE is its neighbours, nothing dense
    again = CFStage.load(tmp_path, scalars, block_model.params, mmap=True)
    for name in ("indptr", "indices", "scores"):
        np.testing.assert_array_equal(getattr(again.ease, name), getattr(stage.ease, name))
    assert file_mapped(again.ease.matrix.indices) and file_mapped(again.ease.matrix.data)
    np.testing.assert_array_equal(again.index.movies, stage.index.movies)
    assert (again.seen != stage.seen).nnz == 0
    np.testing.assert_array_equal(again.base.user_stats, stage.base.user_stats)
    assert again.base.genres == stage.base.genres and again.mf.mu == stage.mf.mu
