"""Drift statistics and the poisoning detector on data with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from movierec.data.quality import drift_report, poisoning_report, psi

T0 = pd.Timestamp("2025-03-01T00:00:00Z")


def _ratings(
    rng: np.random.Generator, n: int, p: list[float], users: int, movies: int, days: int = 90
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": rng.integers(0, users, n),
            "movie_id": [f"m+{i}" for i in rng.integers(0, movies, n)],
            "rating": rng.choice([1, 2, 3, 4, 5], size=n, p=p),
            "timestamp": T0 + pd.to_timedelta(rng.integers(0, days * 86400, n), unit="s"),
        }
    )


NATURAL = [0.06, 0.11, 0.27, 0.34, 0.22]


def test_psi_is_zero_for_equal_and_large_for_shifted_distributions() -> None:
    assert psi(np.array([10, 20, 30]), np.array([1, 2, 3])) == 0.0
    assert psi(np.array([50, 30, 20]), np.array([5, 25, 70])) > 0.2


def test_drift_flags_a_shifted_rating_distribution_and_not_a_resample() -> None:
    rng = np.random.default_rng(0)
    ref = _ratings(rng, 20_000, NATURAL, 500, 300)
    same = _ratings(rng, 5_000, NATURAL, 500, 300, days=22)
    assert drift_report(ref, same)["drifted"] is False
    shifted = _ratings(rng, 5_000, [0.4, 0.3, 0.2, 0.05, 0.05], 500, 300, days=22)
    report = drift_report(ref, shifted)
    assert report["drifted"] is True
    assert report["rating_psi"] > 0.2


def _attack(movie: str, n: int, first_user: int, rating: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": np.arange(first_user, first_user + n),
            "movie_id": movie,
            "rating": rating,
            "timestamp": T0 + pd.Timedelta(days=100) + pd.to_timedelta(np.arange(n) * 60, unit="s"),
        }
    )


def test_a_burst_of_five_stars_from_new_accounts_is_flagged() -> None:
    rng = np.random.default_rng(1)
    history = _ratings(rng, 20_000, NATURAL, 500, 300)
    organic = _ratings(rng, 3_000, NATURAL, 500, 300)
    organic["timestamp"] += pd.Timedelta(days=90)
    attack = _attack("m+7", 40, 10_000, 5)
    new = pd.concat([organic, attack], ignore_index=True)
    report = poisoning_report(history, new, new_users=set(range(10_000, 10_040)))
    assert [f["movie_id"] for f in report["flagged"]] == ["m+7"]
    assert len(report["flagged_events"]) == 40
    assert {e["user_id"] for e in report["flagged_events"]} == set(range(10_000, 10_040))


def test_a_burst_from_long_standing_users_or_with_ordinary_ratings_is_not_flagged() -> None:
    rng = np.random.default_rng(2)
    history = _ratings(rng, 20_000, NATURAL, 500, 300)
    loyal = _attack("m+7", 40, 0, 5)  # users 0..39 already exist
    assert poisoning_report(history, loyal, new_users=set())["flagged"] == []
    ordinary = _attack("m+8", 40, 10_000, 4)
    ordinary["rating"] = rng.choice([1, 2, 3, 4, 5], size=40, p=NATURAL)
    report = poisoning_report(history, ordinary, new_users=set(range(10_000, 10_040)))
    assert report["checked"] == 1 and report["flagged"] == []
