"""The online evaluator's arithmetic and decisions on hand-made logs with known answers."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from movierec.core.settings import Settings
from movierec.release.evaluator import (
    ArmMetrics,
    Decision,
    compute_arm_metrics,
    decide,
    load_served,
    two_proportion_test,
)

T0 = pd.Timestamp("2025-03-01T10:00:00Z")
WINDOW = timedelta(minutes=30)


def _served(rows: list[tuple[str, int, int, list[str], int, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "request_id": rid,
                "ts": T0 + pd.Timedelta(minutes=minute),
                "user_id": user,
                "arm": "canary",
                "model_version": "v2",
                "items": items,
                "status": status,
                "latency_ms": latency,
            }
            for rid, user, minute, items, status, latency in rows
        ]
    )


def _watches(rows: list[tuple[int, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"ts": T0 + pd.Timedelta(minutes=m), "user_id": u, "movie_id": mid, "minute": 0}
            for u, mid, m in rows
        ]
    )


USERS = pd.DataFrame({"user_id": [1, 2, 3], "gender": ["F", "M", "F"]})


def test_click_counts_only_watches_of_listed_movies_inside_the_window() -> None:
    served = _served(
        [
            ("a", 1, 0, ["heat+1995", "alien+1979"], 200, 10.0),  # clicked at +5 min
            ("b", 2, 0, ["heat+1995"], 200, 20.0),  # watched, but 45 min later: no click
            ("c", 3, 0, ["heat+1995"], 200, 30.0),  # watched another movie: no click
            ("d", 1, 0, [], 500, 40.0),  # an error
        ]
    )
    watches = _watches([(1, "alien+1979", 5), (2, "heat+1995", 45), (3, "jaws+1975", 3)])
    # the newest event is at +45 min, so requests served at +0 are mature (window 30)
    m = compute_arm_metrics(
        served,
        watches,
        pd.DataFrame(columns=["user_id", "movie_id", "rating", "timestamp"]),
        USERS,
        window=WINDOW,
        arm="canary",
        model_version="v2",
    )
    assert m.requests == 4
    assert m.errors == 1 and m.error_rate == pytest.approx(0.25)
    assert m.mature_requests == 3
    assert m.clicks == 1
    assert m.ctr == pytest.approx(1 / 3)
    assert m.recommendations == 4
    assert m.latency_p50_ms == pytest.approx(25.0)
    assert m.ctr_by_gender == {"F": pytest.approx(0.5), "M": 0.0}


def test_requests_whose_window_is_not_yet_observed_are_not_counted() -> None:
    served = _served([("a", 1, 0, ["heat+1995"], 200, 1.0), ("b", 2, 20, ["heat+1995"], 200, 1.0)])
    watches = _watches([(1, "heat+1995", 31)])
    m = compute_arm_metrics(
        served,
        watches,
        pd.DataFrame(columns=["user_id", "movie_id", "rating", "timestamp"]),
        USERS,
        window=WINDOW,
        arm="canary",
        model_version="v2",
    )
    assert m.mature_requests == 1  # "b" at +20 needs events up to +50
    assert m.clicks == 0  # the watch at +31 is outside "a"'s 30-minute window


def test_a_watch_is_credited_to_the_latest_request_that_listed_the_movie() -> None:
    served = _served(
        [
            ("a", 1, 0, ["heat+1995", "alien+1979"], 200, 1.0),
            ("b", 1, 2, ["heat+1995"], 200, 1.0),  # asked again; watched heat after this
            ("c", 1, 4, ["jaws+1975"], 200, 1.0),  # a later list without heat: no credit
            ("d", 2, 0, ["heat+1995"], 200, 1.0),
            ("e", 2, 1, ["heat+1995"], 200, 1.0),
        ]
    )
    watches = _watches([(1, "heat+1995", 6), (2, "heat+1995", 3), (2, "heat+1995", 45)])
    m = compute_arm_metrics(
        served,
        watches,
        pd.DataFrame(columns=["user_id", "movie_id", "rating", "timestamp"]),
        USERS,
        window=WINDOW,
        arm="canary",
        model_version="v2",
    )
    assert m.mature_requests == 5
    assert m.clicks == 2  # "b" and "e"; not "a" nor "d", whose watch went to a later list
    assert m.ctr == pytest.approx(2 / 5)


def test_satisfaction_ratio_is_female_over_male_mean_rating_of_recommended_movies() -> None:
    served = _served(
        [
            ("a", 1, 0, ["heat+1995"], 200, 1.0),
            ("b", 2, 0, ["heat+1995", "jaws+1975"], 200, 1.0),
        ]
    )
    ratings = pd.DataFrame(
        {
            "user_id": [1, 2, 2, 2],
            "movie_id": ["heat+1995", "heat+1995", "jaws+1975", "alien+1979"],
            "rating": [3, 4, 2, 5],  # alien was not recommended: ignored
            "timestamp": [T0 + pd.Timedelta(minutes=m) for m in (50, 60, 70, 80)],
        }
    )
    m = compute_arm_metrics(
        served, _watches([]), ratings, USERS, window=WINDOW, arm="canary", model_version="v2"
    )
    assert m.quality_events == 3
    assert m.mean_rating_female == pytest.approx(3.0)
    assert m.mean_rating_male == pytest.approx(3.0)
    assert m.satisfaction_ratio == pytest.approx(1.0)


def test_two_proportion_test_matches_a_hand_computation() -> None:
    c = two_proportion_test(30, 100, 20, 100)
    assert c.diff == pytest.approx(0.10)
    # pooled p = 0.25, se = sqrt(.25*.75*.02) = 0.061237
    assert c.z == pytest.approx(0.10 / 0.0612372, rel=1e-4)
    assert c.p_value == pytest.approx(0.1017, abs=1e-3)
    assert c.ci_low is not None and c.ci_high is not None
    assert c.ci_low < 0.10 < c.ci_high
    assert two_proportion_test(1, 0, 1, 10).p_value is None


def _arm(mature: int, ctr: float, **kw: float) -> ArmMetrics:
    m = ArmMetrics(arm="canary", model_version="v2", requests=mature, mature_requests=mature)
    m.ctr, m.clicks = ctr, int(ctr * mature)
    for k, v in kw.items():
        setattr(m, k, v)
    return m


@pytest.fixture
def settings(tmp_path: object) -> Settings:
    return Settings.from_env({}, home=tmp_path, min_samples_per_arm=100)


def test_decisions(settings: Settings) -> None:
    assert decide(settings, 10, _arm(50, 0.4), 0.4, 500)[0] is Decision.HOLD
    assert decide(settings, 10, _arm(500, 0.4), 0.4, 50)[0] is Decision.HOLD
    assert decide(settings, 10, _arm(500, 0.4), 0.4, 500)[0] is Decision.RAMP
    assert decide(settings, 100, _arm(500, 0.4), 0.4, 0)[0] is Decision.PROMOTE
    # below 10% absolute, or below 70% of stable
    assert decide(settings, 10, _arm(500, 0.05), 0.06, 500)[0] is Decision.ABORT
    assert decide(settings, 10, _arm(500, 0.2), 0.4, 500)[0] is Decision.ABORT
    # unfair to one gender
    assert (
        decide(settings, 10, _arm(500, 0.4, satisfaction_ratio=0.7), 0.4, 500)[0] is Decision.ABORT
    )
    # guardrails abort even before there are enough samples
    errs = _arm(20, 0.4, error_rate=0.5)
    errs.requests = 20
    decision, reasons = decide(settings, 10, errs, 0.4, 500)
    assert decision is Decision.ABORT and "error rate" in reasons[0]
    slow = _arm(20, 0.4, latency_p99_ms=900.0)
    assert decide(settings, 10, slow, 0.4, 500)[0] is Decision.ABORT


def test_load_served_reads_lists_and_strings_and_skips_corrupt_lines(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "served.jsonl"
    path.write_text(
        '{"request_id":"a","ts":"2025-03-01T10:00:00+00:00","user_id":1,"arm":"stable",'
        '"model_version":"v1","items":["x+1","y+2"],"latency_ms":1.5,"status":200}\n'
        "not json\n"
        '{"request_id":"b","ts":"2025-03-01T10:00:01.5+00:00","user_id":2,"arm":"canary",'
        '"model_version":"v2","items":"x+1,z+3","latency_ms":2,"status":200}\n'
    )
    frame = load_served([path])
    assert list(frame["request_id"]) == ["a", "b"]
    assert frame["items"].tolist() == [["x+1", "y+2"], ["x+1", "z+3"]]
    assert str(frame["ts"].dt.tz) == "UTC"


def test_a_click_is_the_start_of_a_viewing_not_each_minute_of_it() -> None:
    served = _served([("a", 1, 0, ["heat+1995"], 200, 1.0), ("b", 1, 10, ["heat+1995"], 200, 1.0)])
    # one viewing from +1 to +40 (a line per minute), then a new one from +60
    watches = _watches([(1, "heat+1995", 1.0 + k) for k in range(40)] + [(1, "heat+1995", 60)])
    watches["minute"] = [*range(40), 0]
    m = compute_arm_metrics(
        served,
        watches,
        pd.DataFrame(columns=["user_id", "movie_id", "rating", "timestamp"]),
        USERS,
        window=WINDOW,
        arm="canary",
        model_version="v2",
    )
    assert m.clicks == 1  # "a" started the viewing; "b" came while it went on
