"""`movierec offline-eval`: the whole training pipeline on any split, for comparison with any
other system.

Train and test files are ratings in the canonical schema (Parquet, or TSV/CSV with a header:
user_id, movie_id, rating, timestamp; movie ids as slugs); user and movie attributes come from
the fetched dataset. Writes `predictions.tsv` (user_id, movie_id, prediction for every test
row), `topk.tsv` (user_id, rank, movie_id: the 20 best per test user, leaving out movies that
user has in the train file) and `metrics.json`. A train movie id the dataset does not know
is trained on as a movie with unknown metadata (counted in the metrics as `unknown_titles`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from movierec.core.errors import DataValidationError
from movierec.core.settings import Settings
from movierec.data.movielens import load_tables
from movierec.model.recommender import TwoStageModel
from movierec.model.training.dataset import TrainingData
from movierec.offline.evaluate import evaluate_model
from movierec.offline.recipe import fit_model

COLUMNS = ("user_id", "movie_id", "rating", "timestamp")


@dataclass
class OfflineResult:
    out: Path
    metrics: dict[str, object]
    model: TwoStageModel

    def summary(self) -> dict[str, object]:
        return {
            "out": str(self.out),
            **{k: v for k, v in self.metrics.items() if not isinstance(v, dict | list)},
        }


def read_ratings(path: Path) -> pd.DataFrame:
    """A ratings file, validated: clear errors name the file and what is wrong."""
    if not path.exists():
        raise DataValidationError(f"{path} does not exist")
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep="\t" if path.suffix in (".tsv", ".txt") else ",")
    except Exception as exc:
        raise DataValidationError(f"{path}: unreadable ({exc})") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataValidationError(f"{path} lacks columns {missing} (has {list(frame.columns)})")
    try:
        frame["user_id"] = frame["user_id"].astype("int64")
    except (ValueError, TypeError):
        raise DataValidationError(f"{path}: user ids that are not integers") from None
    frame["movie_id"] = frame["movie_id"].astype(str)
    if not frame["rating"].between(1, 5).all():
        raise DataValidationError(f"{path}: ratings outside 1..5")
    ts = frame["timestamp"]
    frame["timestamp"] = (
        pd.to_datetime(ts, unit="s", utc=True)
        if pd.api.types.is_numeric_dtype(ts)
        else pd.to_datetime(ts, utc=True)
    )
    return frame[list(COLUMNS)]


def offline_eval(
    settings: Settings, train_file: Path, test_file: Path, out: Path, dataset: str | None = None
) -> OfflineResult:

    tables = load_tables(settings, dataset or settings.data.dataset)
    train, test = read_ratings(train_file), read_ratings(test_file)
    fitted = fit_model(TrainingData.from_ratings(train, tables.users, tables.movies), settings)
    model = fitted.model
    out.mkdir(parents=True, exist_ok=True)
    pred = model.predict_ratings(test["user_id"].to_numpy(), test["movie_id"].to_numpy())
    test.assign(prediction=pred)[["user_id", "movie_id", "prediction"]].to_csv(
        out / "predictions.tsv", sep="\t", index=False
    )
    users = test["user_id"].unique()
    topk = model.recommend(users, 20)
    rows = [(u, r + 1, m) for u in users for r, m in enumerate(topk[int(u)])]
    pd.DataFrame(rows, columns=["user_id", "rank", "movie_id"]).to_csv(
        out / "topk.tsv", sep="\t", index=False
    )
    metrics = evaluate_model(model, test, tables.users, len(tables.movies))
    metrics["unknown_titles"] = int((~train["movie_id"].isin(tables.movies["movie_id"])).sum())
    metrics["train_seconds"] = fitted.seconds
    metrics["fit_info"] = model.fit_info
    metrics["tuning_trials"] = fitted.trials
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    return OfflineResult(out, metrics, model)
