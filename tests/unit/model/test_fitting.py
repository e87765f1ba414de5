"""Fitting: implicit's ALS reports its iterations through the project's progress."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.sparse as sp

from movierec.model.training.cf_stage import implicit_als


def test_als_reports_every_iteration_when_not_on_a_terminal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rng = np.random.default_rng(0)
    X = sp.csr_matrix((rng.random((30, 20)) < 0.3).astype(np.float32))
    caplog.set_level(logging.INFO, logger="movierec.core.progress")
    users, items = implicit_als(X, factors=4, iters=3, threads=1)
    assert users.shape == (30, 4) and items.shape == (20, 4)
    assert caplog.records[-1].getMessage().startswith("ALS: 100% (3/3 iterations")
