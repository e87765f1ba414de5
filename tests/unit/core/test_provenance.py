"""The CSV registers: typed round trips, and appends from several processes at once."""

from __future__ import annotations

import csv
import io
import multiprocessing as mp
from dataclasses import fields
from pathlib import Path

import pytest

from movierec.core.provenance import (
    DataRecord,
    ModelRecord,
    PredictionRecord,
    _cell,
    append_data,
    append_model,
    append_predictions,
    csv_line,
    find_data,
    find_model,
    find_prediction,
    read_models,
    read_predictions,
)
from movierec.core.settings import Settings
from tests.conftest import make_settings


@pytest.mark.parametrize(
    "version",
    ["v1", "", 'a "quoted" one', "a, comma", "two\nlines", "carriage\rreturn", " spaced ", "é"],
)
def test_a_row_s_line_is_what_csv_writer_writes(version: str) -> None:
    rows = [
        PredictionRecord("r1", "2025-01-01T00:00:00.000+00:00", 7, version, "stable", "f", 1.5),
        _model(version),  # JSON cells, quoted
    ]
    for row in rows:
        buf = io.StringIO()
        cells = [_cell(getattr(row, f.name)) for f in fields(row)]
        csv.writer(buf, lineterminator="\n").writerow(cells)
        assert csv_line(row) == buf.getvalue()


def _model(version: str) -> ModelRecord:
    return ModelRecord(
        version=version,
        created_at="2025-01-01T00:00:00+00:00",
        git_commit="abc",
        git_branch="main",
        git_dirty=True,
        training_data_id="d1",
        holdout_sha256="h" * 64,
        metrics={"rmse": 0.91, "ndcg@10": 0.2},
        params={"eta": 0.1, "note": 'a "quoted", comma'},
        framework_versions={"xgboost": "3.0"},
        artifact_path="models/v1",
        artifact_sha256="s" * 64,
    )


def test_records_round_trip_with_types(settings: Settings) -> None:
    append_model(settings, _model("v1"))
    append_data(
        settings,
        DataRecord("d1", "data/x.parquet", "f" * 64, 10, ["a", "b"], {"a": 0}, "s", "e", "c", {}),
    )
    [m] = read_models(settings)
    assert m == _model("v1")
    assert isinstance(m.git_dirty, bool) and m.metrics["rmse"] == 0.91
    assert find_model(settings, "v1") == m and find_model(settings, "v2") is None
    d = find_data(settings, "d1")
    assert d is not None and d.rows == 10 and d.columns == ["a", "b"]


def _writer(home: str, worker: int) -> None:
    s = make_settings(Path(home))
    for i in range(300):
        batch = [
            PredictionRecord(
                f"{worker}-{i}-{j}", "2025-01-01T00:00:00", worker, "v1", "stable", "x", 1.5
            )
            for j in range(1 + i % 7)
        ]
        append_predictions(s, batch)


def test_concurrent_appends_never_interleave_or_lose_a_line(tmp_path: Path) -> None:
    procs = [
        mp.get_context("fork").Process(target=_writer, args=(str(tmp_path), w)) for w in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    s = make_settings(tmp_path)
    path = s.models_path / "prediction_events.csv"
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][0] == "request_id"
    assert sum(r[0] == "request_id" for r in rows) == 1
    expected = 4 * sum(1 + i % 7 for i in range(300))
    assert len(rows) - 1 == expected
    assert all(len(r) == 7 for r in rows)
    ids = [r.request_id for r in read_predictions(s)]
    assert len(set(ids)) == expected
    hit = find_prediction(s, "3-299-0")
    assert hit is not None and hit.user_id == 3 and hit.latency_ms == 1.5
    assert find_prediction(s, "nope") is None
