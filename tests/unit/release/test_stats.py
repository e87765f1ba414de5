"""The statistics of the release decision against hand computations."""

from __future__ import annotations

import pytest

from movierec.release.stats import two_proportion_test


def test_two_proportion_test_matches_a_hand_computation() -> None:
    c = two_proportion_test(30, 100, 20, 100)
    assert c.diff == pytest.approx(0.10)
    # pooled p = 0.25, se = sqrt(.25*.75*.02) = 0.061237
    assert c.z == pytest.approx(0.10 / 0.0612372, rel=1e-4)
    assert c.p_value == pytest.approx(0.1017, abs=1e-3)
    assert c.ci_low is not None and c.ci_high is not None
    assert c.ci_low < 0.10 < c.ci_high
    assert two_proportion_test(1, 0, 1, 10).p_value is None
