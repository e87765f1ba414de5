"""Rating poisoning on the real ml-100k replay: the clean replay is never flagged, an injected
attack is, and its events stay out of training."""

from __future__ import annotations

import json
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import pandas as pd
import pytest

from movierec.core.settings import Settings
from movierec.data.events import format_rate, format_watch
from movierec.data.ingest import IngestResult, ingest
from movierec.data.lake import load_lake, training_interactions
from movierec.data.replay import replay

STEPS = (0.0, 0.3, 0.5, 0.7, 0.85, 1.0)


def _report(result: IngestResult) -> dict:
    return json.loads(Path(result.report_path).read_text())


@pytest.mark.slow
def test_the_clean_replay_is_never_flagged_and_an_injected_attack_is(
    ml100k_settings: Settings,
) -> None:
    s = ml100k_settings
    for start, end in pairwise(STEPS):
        replay(s, "ml-100k", s.data.event_source, start=start, end=end)
        report = _report(ingest(s))
        assert report["poisoning"]["flagged"] == [], (end, report["poisoning"])
    lake = load_lake(s)
    assert lake.flagged.empty

    # 60 fresh accounts push a badly rated movie with five stars within one hour
    ratings = lake.ratings
    stats = ratings.groupby("movie_id")["rating"].agg(["mean", "size"])
    target = str(stats[(stats["size"] >= 30)].sort_values("mean").index[0])
    t0 = pd.Timestamp(ratings["timestamp"].max()).to_pydatetime() + timedelta(days=1)
    attackers = range(100_001, 100_061)
    lines = []
    for n, user in enumerate(attackers):
        ts = t0 + timedelta(seconds=60 * n)
        lines.append(format_watch(ts, user, target, 1))
        lines.append(format_rate(ts + timedelta(seconds=5), user, target, 5))
    with open(s.path(s.data.event_source), "a") as f:
        f.write("\n".join(lines) + "\n")
    report = _report(ingest(s))["poisoning"]
    assert [f["movie_id"] for f in report["flagged"]] == [target]
    assert report["flagged_event_count"] == 60
    flagged = report["flagged"][0]
    assert flagged["p_value"] < 1e-6 and flagged["new_account_share"] == 1.0

    train = training_interactions(s)
    assert not train["user_id"].isin(attackers).any()
    assert train[train["movie_id"] == target]["user_id"].isin(lake.ratings["user_id"]).all()
    kept = training_interactions(s.replace(exclude_flagged_events=False))
    assert kept["user_id"].isin(attackers).sum() == 60
