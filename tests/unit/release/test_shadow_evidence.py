"""The shadow stage's paired hit rates on hand-made logs."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from movierec.release.shadow_evidence import shadow_metrics

T0 = pd.Timestamp("2025-03-01T10:00:00Z")


def _shadow(rows: list[tuple[str, int, list[str], list[str]]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "request_id": rid,
                "ts": T0,
                "user_id": user,
                "model_version": "v2",
                "items": cand,
                "served_version": "v1",
                "served_items": served,
                "latency_ms": 0.1,
            }
            for rid, user, cand, served in rows
        ]
    )


def test_both_lists_are_judged_on_the_same_requests() -> None:
    shadow = _shadow(
        [
            ("a", 1, ["heat+1995", "jaws+1975"], ["heat+1995", "alien+1979"]),  # both hit
            ("b", 2, ["jaws+1975"], ["alien+1979"]),  # stable's hit only
            ("c", 3, ["up+2009"], ["alien+1979"]),  # the candidate's hit only (found elsewhere)
            ("d", 4, [], ["alien+1979"]),  # no hit; the candidate gave nothing
        ]
    )
    watches = pd.DataFrame(
        {
            "ts": [T0 + pd.Timedelta(minutes=m) for m in (2, 3, 4, 60)],
            "user_id": [1, 2, 3, 9],
            "movie_id": ["heat+1995", "alien+1979", "up+2009", "x+2000"],
            "minute": 0,
        }
    )
    m = shadow_metrics(
        shadow, watches, window=timedelta(minutes=30), candidate="v2", alpha=0.05, rho=10.0
    )
    assert (m.requests, m.mature_requests, m.users) == (4, 4, 4)
    assert (m.stable_hits, m.candidate_hits) == (2, 2)
    assert m.ratio == pytest.approx(1.0)
    assert m.empty_lists == 1
    assert m.overlap == pytest.approx((0.5 + 0 + 0 + 0) / 4)
    assert m.ratio_low is not None and m.ratio_low < 1.0 < (m.ratio_high or 0)


def test_immature_requests_wait() -> None:
    shadow = _shadow([("a", 1, ["heat+1995"], ["heat+1995"])])
    watches = pd.DataFrame(
        {"ts": [T0 + pd.Timedelta(minutes=5)], "user_id": [1], "movie_id": ["heat+1995"]}
    )
    m = shadow_metrics(
        shadow, watches, window=timedelta(minutes=30), candidate="v2", alpha=0.05, rho=10.0
    )
    assert m.requests == 1 and m.mature_requests == 0 and m.ratio is None
