"""Trace a recommendation back to everything that produced it.

`trace REQUEST_ID`: prediction event -> model version -> bundle (still verifies?) and model
provenance (git commit, branch, dirty flag, library versions, offline metrics) -> training
data id -> data provenance -> the data file, with its sha256 and whether the file on disk
still matches. `lineage VERSION` starts from the model. A missing link raises `TraceError`
naming it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from movierec.core.errors import ModelLoadError, TraceError
from movierec.core.files import sha256_file
from movierec.core.provenance import (
    DataRecord,
    ModelRecord,
    PredictionRecord,
    find_data,
    find_model,
    find_prediction,
)
from movierec.core.settings import Settings
from movierec.registry.bundles import bundle_path, verify_bundle


@dataclass
class Trace:
    prediction: PredictionRecord | None
    model: ModelRecord
    bundle_verified: bool
    bundle_problem: str | None
    data: DataRecord
    data_file_matches: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def lineage(settings: Settings, version: str) -> Trace:
    model = find_model(settings, version)
    if model is None:
        raise TraceError(
            f"model {version}: no row in {settings.models_path / 'model_provenance.csv'}"
        )
    problem = None
    try:
        verify_bundle(bundle_path(settings, version))
    except ModelLoadError as exc:
        problem = str(exc)
    data = find_data(settings, model.training_data_id)
    if data is None:
        raise TraceError(
            f"training data {model.training_data_id} of model {version}: no row in "
            f"{settings.models_path / 'data_provenance.csv'}"
        )
    path = settings.path(data.path)
    if not path.exists():
        raise TraceError(f"training data file {path} of {data.data_id} is missing")
    matches = sha256_file(path) == data.sha256
    return Trace(None, model, problem is None, problem, data, matches)


def trace(settings: Settings, request_id: str) -> Trace:
    pred = find_prediction(settings, request_id)
    if pred is None:
        raise TraceError(f"request {request_id}: not in the prediction events")
    t = lineage(settings, pred.model_version)
    t.prediction = pred
    return t
