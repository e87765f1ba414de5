"""Fairness with uncertainty: satisfaction by gender and by age group, each with its interval.

Satisfaction of a group is the mean rating its users gave to movies recommended to them
(after the recommendation). For each group (gender F and M, each MovieLens age band) the
evaluator compares it with the rest of the arm's users of the same grouping: the ratio
group / rest, with an always-valid interval over users (`stats.confidence_sequence`; users
are the units, the variance comes from the delta method). The level is split over the
groups (Bonferroni), so a fair model is flagged by chance in at most `alpha` of releases
whatever the number of groups and looks. The release guardrail acts on the interval: a group
is flagged only when its whole interval lies outside the tolerated range.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from movierec.core.online_metrics import GroupSatisfaction
from movierec.core.schema import age_group_label
from movierec.release.stats import (
    boundary_factor,
    confidence_sequence,
    mixture_ratio,
    ratio_estimate,
    relative_lift,
)


def groups_of(users: pd.DataFrame) -> dict[str, pd.Series]:
    """user_id -> group label, per grouping ("gender", "age")."""
    out: dict[str, pd.Series] = {}
    if len(users) and "gender" in users.columns:
        out["gender"] = users.set_index("user_id")["gender"].astype(str)
    if len(users) and "age" in users.columns:
        labels = age_group_label(users["age"].to_numpy(dtype=float))
        out["age"] = pd.Series(labels, index=users["user_id"].to_numpy())
    return out


def group_satisfaction(
    per_user: pd.DataFrame, users: pd.DataFrame, alpha: float, tolerance: float = 0.15
) -> dict[str, GroupSatisfaction]:
    """{"gender:F": {users, ratings, mean, ratio, low, high}, "age:25-34": ...}: each group's
    mean rating and its ratio to the rest of the grouping, with the interval of the ratio.
    `tolerance` is where the interval is tightest (the guardrail's distance from 1)."""
    rated = per_user[per_user["ratings"] > 0]
    groupings = groups_of(users)
    labels = {name: rated["user_id"].map(g) for name, g in groupings.items()}
    n_groups = sum(int(lab.nunique()) for lab in labels.values())
    if rated.empty or n_groups == 0:
        return {}
    level = alpha / n_groups
    rho = mixture_ratio(level) * (boundary_factor(level) / tolerance) ** 2
    out: dict[str, GroupSatisfaction] = {}
    for name, lab in labels.items():
        for group in sorted(lab.dropna().unique()):
            inside = (lab == group).to_numpy()
            out[f"{name}:{group}"] = _compare(rated, inside, level, rho)
    return out


def _compare(
    rated: pd.DataFrame, inside: np.ndarray, level: float, rho: float
) -> GroupSatisfaction:
    mine = ratio_estimate(rated["rating_sum"][inside], rated["ratings"][inside])
    rest = ratio_estimate(rated["rating_sum"][~inside], rated["ratings"][~inside])
    row: GroupSatisfaction = {
        "users": int(inside.sum()),
        "ratings": int(rated["ratings"][inside].sum()),
        "mean": mine.value,
        "ratio": None,
        "low": None,
        "high": None,
    }
    lift = relative_lift(mine, rest)
    if lift is not None:
        interval = confidence_sequence(lift[0], lift[1], level, rho)
        row["ratio"] = 1.0 + lift[0]
        if interval.low is not None and interval.high is not None:
            row["low"] = 1.0 + interval.low
            row["high"] = 1.0 + interval.high
    return row
