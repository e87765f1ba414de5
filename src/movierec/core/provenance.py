"""The provenance registers (CSV under `models/`): models, data, prediction events, and the
release decisions a person forced (overrides: who and why).

Appends from several processes never interleave or lose a line: each call builds its rows in
memory and writes them with one flock'ed `write` (`fsutil.append_lines`); the header is written
under the same lock when the file is empty. Structured fields (metrics, params, versions,
columns, sources) are JSON inside a quoted CSV cell. Readers return typed rows.

`prediction_events.csv` is rotated daily by the server (renamed to
`prediction_events-YYYY-MM-DD.csv`); `read_predictions` and `find_prediction` read every file.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from movierec.core.files import append_whole
from movierec.core.schema import (
    DATA_PROVENANCE,
    MODEL_PROVENANCE,
    PREDICTION_EVENTS,
    RELEASE_OVERRIDES,
)
from movierec.core.settings import Settings


@dataclass(frozen=True)
class ModelRecord:
    version: str
    created_at: str
    git_commit: str
    git_branch: str
    git_dirty: bool
    training_data_id: str
    holdout_sha256: str
    metrics: dict[str, float]  # the headline offline metrics
    params: dict[str, object]
    framework_versions: dict[str, str]
    artifact_path: str
    artifact_sha256: str


@dataclass(frozen=True)
class DataRecord:
    data_id: str
    path: str
    sha256: str
    rows: int
    columns: list[str]
    missing_values: dict[str, int]
    date_range_start: str
    date_range_end: str
    created_at: str
    source: dict[str, object]  # where the rows came from (the lake's source positions)


@dataclass(frozen=True)
class PredictionRecord:
    request_id: str
    timestamp: str
    user_id: int
    model_version: str
    arm: str
    features_sha256: str
    latency_ms: float


@dataclass(frozen=True)
class OverrideRecord:
    """A release decision made by a person instead of the evaluator."""

    timestamp: str
    action: str  # "force-promote" or "abort"
    candidate: str
    stage: str  # the candidate's stage when overridden: "shadow" or "canary"
    canary_pct: int
    stable_before: str
    stable_after: str
    user: str  # the OS user who ran the command
    reason: str


R = TypeVar("R", ModelRecord, DataRecord, PredictionRecord, OverrideRecord)
Row = ModelRecord | DataRecord | PredictionRecord | OverrideRecord  # a row of a register


_COLUMNS: dict[type, tuple[str, ...]] = {}


def _columns(cls: type) -> tuple[str, ...]:
    columns = _COLUMNS.get(cls)
    if columns is None:
        columns = _COLUMNS[cls] = tuple(f.name for f in fields(cls))
    return columns


# what makes csv.writer (QUOTE_MINIMAL) quote a cell
_QUOTED = re.compile(r'[",\r\n]')


def _cell(value: object) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _to_csv(rows: Sequence[Row], header: bool) -> str:
    buf = io.StringIO()
    if header:
        buf.write(_to_csv_header(type(rows[0])))
    writer = csv.writer(buf, lineterminator="\n")
    columns = _columns(type(rows[0]))
    for row in rows:  # getattr, not asdict: asdict deep-copies every value
        writer.writerow([_cell(getattr(row, c)) for c in columns])
    return buf.getvalue()


def append_rows(path: Path, rows: Sequence[Row]) -> None:
    """Append rows (one dataclass type) in one locked write, with the header if new."""
    if rows:
        append_whole(path, lambda size: _to_csv(rows, header=size == 0).encode("utf-8"))


def csv_line(row: Row) -> str:
    """One row (a dataclass) as `append_rows` writes it, newline included. Cells that need
    no quotes are joined directly (the served log encodes a row per request: a quarter of
    the cost of a csv.writer)."""
    cells = [_cell(getattr(row, c)) for c in _columns(type(row))]
    if len(cells) < 2 or any(_QUOTED.search(c) for c in cells):  # csv's rules
        return _to_csv([row], header=False)
    return ",".join(cells) + "\n"


def append_csv_lines(path: Path, cls: type, lines: Sequence[str]) -> None:
    """Append rows of `cls` already made by `csv_line`, as `append_rows` does."""
    if lines:
        header = _to_csv_header(cls)
        payload = "".join(lines)
        append_whole(path, lambda size: ((header if size == 0 else "") + payload).encode("utf-8"))


def _to_csv_header(cls: type) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(_columns(cls))
    return buf.getvalue()


def _parse(cls: type[R], raw: dict[str, str]) -> R:
    out: dict[str, Any] = {}
    for f in fields(cls):
        v = raw.get(f.name, "")
        t = str(f.type)
        if t == "bool":
            out[f.name] = v == "true"
        elif t == "int":
            out[f.name] = int(v)
        elif t == "float":
            out[f.name] = float(v)
        elif t.startswith(("dict", "list")):
            out[f.name] = json.loads(v) if v else ({} if t.startswith("dict") else [])
        else:
            out[f.name] = v
    return cls(**out)


def _iter_file(cls: type[R], path: Path) -> Iterator[R]:
    if not path.exists():
        return
    with open(path, encoding="utf-8", newline="") as f:
        for raw in csv.DictReader(f):
            yield _parse(cls, raw)


# ---- the registers --------------------------------------------------------------------------


def append_model(settings: Settings, record: ModelRecord) -> None:
    append_rows(settings.models_path / MODEL_PROVENANCE, [record])


def append_data(settings: Settings, record: DataRecord) -> None:
    append_rows(settings.models_path / DATA_PROVENANCE, [record])


def append_predictions(
    settings: Settings, records: Sequence[PredictionRecord], path: Path | None = None
) -> None:
    append_rows(path or settings.models_path / PREDICTION_EVENTS, records)


def append_override(settings: Settings, record: OverrideRecord) -> None:
    append_rows(settings.models_path / RELEASE_OVERRIDES, [record])


def read_overrides(settings: Settings) -> list[OverrideRecord]:
    return list(_iter_file(OverrideRecord, settings.models_path / RELEASE_OVERRIDES))


def read_models(settings: Settings) -> list[ModelRecord]:
    return list(_iter_file(ModelRecord, settings.models_path / MODEL_PROVENANCE))


def read_data(settings: Settings) -> list[DataRecord]:
    return list(_iter_file(DataRecord, settings.models_path / DATA_PROVENANCE))


def prediction_files(settings: Settings) -> list[Path]:
    """The current prediction register and its daily-rotated siblings."""
    stem = Path(PREDICTION_EVENTS).stem
    return sorted(settings.models_path.glob(f"{stem}*.csv"))


def read_predictions(settings: Settings) -> list[PredictionRecord]:
    return [r for p in prediction_files(settings) for r in _iter_file(PredictionRecord, p)]


def find_model(settings: Settings, version: str) -> ModelRecord | None:
    return next((r for r in read_models(settings) if r.version == version), None)


def find_data(settings: Settings, data_id: str) -> DataRecord | None:
    return next((r for r in read_data(settings) if r.data_id == data_id), None)


def find_prediction(settings: Settings, request_id: str) -> PredictionRecord | None:
    """Scan the prediction files line by line (they can be large) for one request id."""
    needle = request_id.encode()
    for path in reversed(prediction_files(settings)):
        with open(path, "rb") as f:
            header = f.readline().decode().rstrip("\n")
            for line in f:
                if needle in line:
                    row = next(csv.reader([line.decode()]))
                    raw = dict(zip(header.split(","), row, strict=False))
                    if raw.get("request_id") == request_id:
                        return _parse(PredictionRecord, raw)
    return None
