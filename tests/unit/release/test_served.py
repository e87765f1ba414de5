"""Reading the served log."""

from __future__ import annotations

from pathlib import Path

from movierec.release.served import load_served, served_log_files
from tests.conftest import make_settings


def test_load_served_reads_lists_and_strings_and_skips_corrupt_lines(tmp_path: Path) -> None:
    path = tmp_path / "served.jsonl"
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


def test_served_log_files_are_the_daily_files_oldest_first(tmp_path: Path) -> None:
    s = make_settings(tmp_path)
    s.logs_path.mkdir(parents=True)
    for day in ("2025-03-02", "2025-03-01"):
        (s.logs_path / f"served-{day}.jsonl").write_text("")
    (s.logs_path / "other.jsonl").write_text("")
    assert [p.name for p in served_log_files(s)] == [
        "served-2025-03-01.jsonl",
        "served-2025-03-02.jsonl",
    ]
