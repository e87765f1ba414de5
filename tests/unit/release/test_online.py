"""Per-arm online metrics on hand-made logs with known answers: clicks, maturity, last
touch, satisfaction."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from movierec.core.online_metrics import ArmMetrics
from movierec.release.online import ArmEvents, ArmLook, observe_arm, viewings

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
NO_RATINGS = pd.DataFrame(columns=["user_id", "movie_id", "rating", "timestamp"])
CANARY = ArmLook(WINDOW, "canary", "v2")


def _metrics(
    served: pd.DataFrame, watches: pd.DataFrame, ratings: pd.DataFrame = NO_RATINGS
) -> ArmMetrics:
    return observe_arm(ArmEvents(served, watches, ratings, USERS), CANARY).metrics


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
    m = _metrics(served, watches)
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
    m = _metrics(served, watches)
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
    m = _metrics(served, watches)
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
    m = _metrics(served, _watches([]), ratings)
    assert m.quality_events == 3
    assert m.mean_rating_female == pytest.approx(3.0)
    assert m.mean_rating_male == pytest.approx(3.0)
    assert m.female_male_rating_ratio == pytest.approx(1.0)


def test_a_click_is_the_start_of_a_viewing_not_each_minute_of_it() -> None:
    served = _served([("a", 1, 0, ["heat+1995"], 200, 1.0), ("b", 1, 10, ["heat+1995"], 200, 1.0)])
    # one viewing from +1 to +40 (a line per minute), then a new one from +60
    watches = _watches([(1, "heat+1995", 1.0 + k) for k in range(40)] + [(1, "heat+1995", 60)])
    watches["minute"] = [*range(40), 0]
    m = _metrics(served, watches)
    assert m.clicks == 1  # "a" started the viewing; "b" came while it went on


def test_watch_completion_counts_minutes_of_clicked_viewings_that_ended() -> None:
    served = _served(
        [
            ("a", 1, 0, ["heat+1995"], 200, 1.0),
            ("b", 2, 0, ["jaws+1975"], 200, 1.0),
            ("c", 3, 0, ["alien+1979"], 200, 1.0),
        ]
    )
    # user 1 watches heat 70 minutes, user 2 jaws 20 minutes; user 3's viewing is still going
    # on at the newest event (no credit for completion yet); a late line of user 9 ends the log
    lines = [(1, "heat+1995", 1.0 + k) for k in range(70)]
    lines += [(2, "jaws+1975", 2.0 + k) for k in range(20)]
    lines += [(3, "alien+1979", 100.0 + k) for k in range(10)] + [(9, "x+2000", 111.0)]
    watches = _watches(lines)
    watches["minute"] = [*range(70), *range(20), *range(10), 0]
    look = ArmLook(WINDOW, "canary", "v2", completed_minutes=60)
    data = observe_arm(ArmEvents(served, watches, NO_RATINGS, USERS), look)
    m = data.metrics
    assert m.clicks == 2  # user 3 started 100 minutes later: outside the window
    assert m.viewings == 2
    assert m.minutes_per_viewing == pytest.approx(45.0)
    assert m.completed_share == pytest.approx(0.5)


def test_online_rmse_compares_ratings_after_a_recommendation_with_the_prediction() -> None:
    served = _served([("a", 1, 0, ["heat+1995", "jaws+1975"], 200, 1.0)])
    ratings = pd.DataFrame(
        {
            "user_id": [1, 1, 1],
            "movie_id": ["heat+1995", "jaws+1975", "alien+1979"],  # alien: not recommended
            "rating": [4, 2, 5],
            "timestamp": [T0 + pd.Timedelta(minutes=m) for m in (50, 60, 70)],
        }
    )

    def predict(users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        assert list(users) == [1, 1]
        return np.where(movies == "heat+1995", 3.0, 3.0)

    events = ArmEvents(served, _watches([]), ratings, USERS)
    m = observe_arm(events, ArmLook(WINDOW, "canary", "v2", predict)).metrics
    assert m.rmse_ratings == 2
    assert m.online_rmse == pytest.approx(1.0)  # errors -1 and +1


def test_per_user_sums_and_the_ctr_interval_are_over_users() -> None:
    served = _served(
        [(f"r{u}-{k}", u, 0, ["heat+1995"], 200, 1.0) for u in (1, 2, 3) for k in range(4)]
    )
    watches = _watches([(1, "heat+1995", 1), (2, "heat+1995", 2), (9, "x+2000", 45)])
    data = observe_arm(ArmEvents(served, watches, NO_RATINGS, USERS), CANARY)
    per_user = data.per_user.set_index("user_id")
    assert per_user.loc[1, "requests"] == 4 and per_user.loc[1, "clicks"] == 1  # last touch
    assert per_user.loc[3, "clicks"] == 0
    m = data.metrics
    assert m.users == 3 and m.ctr == pytest.approx(2 / 12)
    assert m.ctr_low is not None and m.ctr_high is not None
    assert m.ctr_low < m.ctr < m.ctr_high


def test_viewings_split_on_a_pause_or_a_new_minute_zero() -> None:
    watches = _watches([(1, "heat+1995", float(k)) for k in (0, 1, 2, 20, 21, 30)])
    watches["minute"] = [0, 1, 2, 3, 4, 0]
    views = viewings(watches)
    assert views["minutes"].tolist() == [3, 2, 1]
