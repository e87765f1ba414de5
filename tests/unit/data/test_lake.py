"""The lake's commit record, `_state.json`: one typed reader and writer, the same keys on disk,
and a corrupt file named rather than replaced."""

from __future__ import annotations

import json

import pytest

from movierec.core.errors import DataValidationError
from movierec.core.settings import Settings
from movierec.data.lake import LakeState, PendingCounts, Refreshed, state_file
from movierec.data.positions import FilePosition, KafkaPosition


def test_the_state_reads_back_as_written_with_the_files_keys(settings: Settings) -> None:
    assert LakeState.load(settings) == LakeState()  # before the first commit
    state = LakeState(
        seq=3,
        parts=["00000002-rates.parquet"],
        positions={"/x/events.log": FilePosition(120, 7), "kafka:events": KafkaPosition({0: 5})},
        pending=PendingCounts(10, 8, 2, {"bad rating": 2}),
        totals={"ratings": 8},
        last_report="data/data_refresh_reports/r.json",
        refreshed=Refreshed(2, 1.5, {"/x/events.log": FilePosition(100, 7)}),
    )
    state.save(settings)
    raw = json.loads(state_file(settings).read_text())
    assert raw["positions"] == {
        "/x/events.log": {"offset": 120, "inode": 7},
        "kafka:events": {"offsets": {"0": 5}},
    }
    assert raw["pending"] == {"lines": 10, "accepted": 8, "quarantined": 2,
                              "reasons": {"bad rating": 2}}  # fmt: skip
    assert raw["refreshed"] == {"seq": 2, "at": 1.5, "positions": {"/x/events.log": {
        "offset": 120 - 20, "inode": 7}}}  # fmt: skip
    assert LakeState.load(settings) == state


def test_pending_counts_after_a_report_keep_only_what_came_since() -> None:
    now = PendingCounts(30, 25, 5, {"bad rating": 4, "too long": 1})
    reported = PendingCounts(10, 8, 2, {"bad rating": 2, "too long": 1})
    assert now.minus(reported) == PendingCounts(20, 17, 3, {"bad rating": 2})


@pytest.mark.parametrize(
    "text", ['{"seq": ', "[1]", '{"seq": "x"}', '{"positions": {"a": {"inode": 1}}}']
)
def test_a_corrupt_state_is_an_error_naming_the_file(settings: Settings, text: str) -> None:
    state_file(settings).parent.mkdir(parents=True, exist_ok=True)
    state_file(settings).write_text(text)
    with pytest.raises(DataValidationError, match=r"_state\.json"):
        LakeState.load(settings)
