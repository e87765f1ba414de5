"""The training job (`movierec train`) and holdout evaluation of a version (`movierec evaluate`).

lake -> holdout (created once) -> training interactions without holdout pairs and without
events flagged as poisoning -> immutable snapshot registered in data provenance -> fit (tuned)
-> metrics on the holdout -> serving artifacts precomputed (top-K for every known user, the
cold-start list) -> bundle saved atomically -> a row in model provenance. What is served does
not change here.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from movierec.core.errors import DataNotFoundError
from movierec.core.files import sha256_file
from movierec.core.provenance import ModelRecord, append_model
from movierec.core.schema import COLD_START
from movierec.core.settings import Settings
from movierec.data.holdout import ensure_holdout, holdout_sha256, load_holdout
from movierec.data.lake import TABLES, LakeTables, read_table, training_interactions
from movierec.data.movielens import load_tables
from movierec.data.snapshot import snapshot_training_data
from movierec.data.splits import exclude_pairs
from movierec.model.recommender import RankByRating, Recommender, TwoStageModel, load_recommender
from movierec.model.training.cluster import Engine, InProcess, open_engine
from movierec.model.training.dataset import TrainingData
from movierec.offline.evaluate import evaluate_model
from movierec.offline.metric_functions import headline, ranking_metrics
from movierec.offline.recipe import cluster_plan, fit_model
from movierec.registry.bundles import (
    BundleMetadata,
    bundle_path,
    library_versions,
    load_metadata,
    new_version,
    save_bundle,
    verify_bundle,
)
from movierec.registry.routing import read_routing, set_stable
from movierec.registry.tracking import log_bundle
from movierec.retrain.gate import lake_counts, write_state
from movierec.retrain.list_writer import write_lists

log = logging.getLogger(__name__)

TRAINING_TABLES = ("interactions", "ratings", "flagged")  # what training reads of the lake


@dataclass
class TrainResult:
    version: str
    path: Path
    metrics: dict[str, object]
    data_id: str
    seconds: float
    record: ModelRecord  # the model-provenance row (already appended unless deferred)
    mlflow_run: str | None = None

    def summary(self) -> dict[str, object]:
        return {
            "version": self.version,
            "path": str(self.path),
            "data_id": self.data_id,
            "seconds": round(self.seconds, 1),
            "metrics": {k: v for k, v in self.metrics.items() if not isinstance(v, dict)},
            "mlflow_run": self.mlflow_run,
        }


def train_candidate(
    settings: Settings, tune: bool = True, record_provenance: bool = True
) -> TrainResult:
    """Train, evaluate and register a candidate from the lake. Does not route it. Training
    and the lists run in this process for small data, else on Dask (`cluster_plan`); a worker
    lost mid-job is a `TrainingError` and nothing is registered.

    With `record_provenance=False` the model-provenance row is returned in `record` for the
    caller to append at its own commit point (the retrainer does, so that a run killed before
    its decision leaves the registers as they were)."""

    start = time.perf_counter()
    lake = training_lake(settings)
    tables = load_tables(settings, settings.data.dataset)
    holdout = ensure_holdout(settings, lake.ratings)
    inter = exclude_pairs(training_interactions(settings, lake), holdout)
    snapshot = snapshot_training_data(settings, inter)
    data = TrainingData.from_interactions(inter, tables.users, tables.movies)
    with open_engine(cluster_plan(settings), len(data.ratings)) as engine:
        fitted = fit_model(data, settings, tune=tune, engine=engine)
        metrics = evaluate_model(fitted.model, holdout, tables.users, len(tables.movies))
        counts = {
            "users": int(lake.interactions["user_id"].nunique()),
            "interactions": len(lake.interactions),
            "ratings": len(lake.ratings),
        }
        candidate = Candidate(
            fitted.model,
            users=np.union1d(tables.users["user_id"].to_numpy(), inter["user_id"].unique()),
            metrics=metrics,
            data_id=snapshot.data_id,
            holdout_sha=holdout_sha256(settings),
            extra={
                "training_cutoff": training_cutoff(inter),
                "data_counts": counts,
                "training_rows": snapshot.rows,
                "tuning": {"trials": fitted.trials, "seconds_with_fit": fitted.seconds},
            },
        )
        version, record = _register(settings, candidate, engine)
    if record_provenance:
        append_model(settings, record)
    run_id = log_bundle(settings, settings.models_path / version)  # MLflow, when configured
    seconds = time.perf_counter() - start
    log.info("trained %s in %.1fs: %s", version, seconds, headline(metrics))
    return TrainResult(
        version, settings.models_path / version, metrics, snapshot.data_id, seconds, record, run_id
    )


def training_lake(settings: Settings) -> LakeTables:
    """The lake tables training reads (interactions, ratings, flagged events), each from its
    Parquet file; the others (watches: a row per minute watched) are left unread, empty."""
    frames = {}
    for name in TABLES:
        frame = read_table(settings, name) if name in TRAINING_TABLES else pd.DataFrame()
        if frame is None:
            raise DataNotFoundError(
                f"{settings.lake_path / (name + '.parquet')} does not exist: run `movierec ingest`"
            )
        frames[name] = frame
    return LakeTables(**frames)


@dataclass(frozen=True)
class Candidate:
    """A fitted model and what its bundle records: the users to precompute lists for, its
    holdout metrics, the training data's id, the holdout's sha256, and any more metadata."""

    model: Recommender
    users: np.ndarray
    metrics: dict[str, object]
    data_id: str
    holdout_sha: str
    extra: BundleMetadata


def _register(
    settings: Settings, candidate: Candidate, engine: Engine | None = None
) -> tuple[str, ModelRecord]:
    """Precompute the serving lists (on `engine`) and save the bundle; returns its provenance
    row."""

    c, k = candidate, settings.training.recommendations_k
    version = new_version()
    while (settings.models_path / version).exists():  # two in the same second
        time.sleep(1)
        version = new_version()
    described = c.model.describe()
    settings.models_path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".work-", dir=settings.models_path) as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        names, n_users = write_bundle_files(folder, c.model, c.users, k, engine)
        log.info("lists of %d users written in %.1f s", n_users, time.perf_counter() - t0)
        files: dict[str, bytes | Path] = {n: folder / n for n in names}
        meta: BundleMetadata = {
            "training_data_id": c.data_id,
            "holdout_sha256": c.holdout_sha,
            "params": described["params"],
            "fit_info": described["fit_info"],
            "feature_names": described["feature_names"],
            "metrics": c.metrics,
            "serving": {"k": k, "users": n_users},
            **c.extra,
        }
        path = save_bundle(settings, version, files, meta)
    saved = json.loads((path / "metadata.json").read_text())

    record = ModelRecord(
        version=version,
        created_at=saved["created_at"],
        git_commit=saved["git_commit"],
        git_branch=saved["git_branch"],
        git_dirty=saved["git_dirty"],
        training_data_id=c.data_id,
        holdout_sha256=c.holdout_sha,
        metrics=headline(c.metrics),
        params=described["params"],
        framework_versions=library_versions(),
        artifact_path=str(path.relative_to(settings.home)),
        artifact_sha256=sha256_file(path / "metadata.json"),
    )
    return version, record


def write_bundle_files(
    folder: Path, model: Recommender, users: np.ndarray, k: int, engine: Engine | None = None
) -> tuple[list[str], int]:
    """The model's files and what the service reads into `folder`: every user's top-k (as a
    table, and as arrays it memory-maps), made per partition of the users on `engine`, and
    the cold-start list. Returns the file names and the number of users with a list."""
    names = model.save(folder)
    lists, n_users = write_lists(folder, model, users, k, engine or InProcess())
    (folder / COLD_START).write_text(json.dumps({"items": model.cold_start(None, k)}))
    return [*names, *lists, COLD_START], n_users


def training_cutoff(interactions: pd.DataFrame) -> str | None:
    """The time of the last event a model trains on: the service folds in what came after."""
    if interactions.empty:
        return None
    return pd.Timestamp(interactions["last_ts"].max()).isoformat()


def _verified(settings: Settings, version: str) -> Path:
    path = bundle_path(settings, version)
    verify_bundle(path)
    return path


def load_trained_model(settings: Settings, version: str) -> Recommender:
    """The full model of a bundle (after its hash check)."""

    return load_recommender(_verified(settings, version))


def evaluate_version(settings: Settings, version: str) -> dict[str, object]:
    """Metrics of a registered version on the fixed holdout (hash-checked first)."""

    holdout = load_holdout(settings)
    model = load_trained_model(settings, version)
    tables = load_tables(settings, settings.data.dataset)
    return evaluate_model(model, holdout, tables.users, len(tables.movies))


def register_rank_by_rating_variant(settings: Settings, base_version: str) -> str:
    """A bundle with `base_version`'s model (so the same holdout RMSE) whose lists rank unseen
    movies by predicted rating alone: good offline RMSE, poor lists - what a canary catches."""

    variant = RankByRating(TwoStageModel.load(_verified(settings, base_version)))
    base_meta = load_metadata(settings, base_version)
    tables = load_tables(settings, settings.data.dataset)
    users = np.union1d(tables.users["user_id"].to_numpy(), variant.known_users)
    holdout = load_holdout(settings)
    by_rating = variant.recommend(
        np.unique(holdout["user_id"]), settings.training.recommendations_k
    )
    metrics = dict(base_meta["metrics"])
    metrics.update(ranking_metrics(by_rating, holdout))
    candidate = Candidate(
        variant,
        users=users,
        metrics=metrics,
        data_id=base_meta["training_data_id"],
        holdout_sha=holdout_sha256(settings),
        extra={"variant_of": base_version, "training_cutoff": base_meta.get("training_cutoff")},
    )
    version, record = _register(settings, candidate)
    append_model(settings, record)
    return version


def train_and_route(settings: Settings, *, tune: bool, serve_if_none: bool) -> dict[str, object]:
    """`movierec train`: a registered candidate; routed as stable only when asked and nothing
    is served yet (the first model of a new installation)."""
    result = train_candidate(settings, tune=tune)
    out = result.summary()
    if serve_if_none and read_routing(settings) is None:
        set_stable(settings, result.version, "first model (movierec train --serve-if-none)")
        write_state(settings, result.version, "initial", lake_counts(settings))
        out["routed"] = "stable"
    return out
