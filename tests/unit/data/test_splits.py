"""Splits: each user's latest fraction, by hand, and removing pairs."""

from __future__ import annotations

import pandas as pd

from movierec.data.splits import exclude_pairs, latest_per_user


def _frame() -> pd.DataFrame:
    t = pd.Timestamp("2025-01-01", tz="UTC")
    rows = [(1, f"m{j}", t + pd.Timedelta(days=9 - j)) for j in range(10)]  # m9 is the oldest
    rows += [(2, f"m{j}", t + pd.Timedelta(days=j)) for j in range(4)]  # too few rows
    return pd.DataFrame(rows, columns=["user_id", "movie_id", "ts"])


def test_the_latest_fraction_of_each_user_with_enough_rows() -> None:
    earlier, later = latest_per_user(_frame(), 0.25, 5, "ts")
    assert later["movie_id"].tolist() == ["m1", "m0"]  # floor(0.25 * 10) = 2, oldest first
    assert len(earlier) == 12 and set(earlier["user_id"]) == {1, 2}
    assert earlier[earlier.user_id == 1]["ts"].max() < later["ts"].min()
    _e, one = latest_per_user(_frame(), 0.01, 5, "ts")
    assert one["movie_id"].tolist() == ["m0"]  # at least one


def test_a_shuffled_split_is_random_but_seeded_and_the_same_size() -> None:
    _e, a = latest_per_user(_frame(), 0.3, 5, "ts", shuffle_seed=1)
    _e, b = latest_per_user(_frame(), 0.3, 5, "ts", shuffle_seed=1)
    assert a["movie_id"].tolist() == b["movie_id"].tolist() and len(a) == 3
    assert set(a["user_id"]) == {1}


def test_exclude_pairs_drops_exactly_the_given_pairs() -> None:
    frame = _frame()
    pairs = pd.DataFrame({"user_id": [1, 2, 3], "movie_id": ["m0", "m9", "m0"]})
    left = exclude_pairs(frame, pairs)
    assert len(left) == len(frame) - 1
    assert ("m0" not in set(left[left.user_id == 1]["movie_id"])) and len(
        left[left.user_id == 2]
    ) == 4
