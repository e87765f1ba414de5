"""The model interface (`Recommender`) and the two-stage model that implements it.

`TwoStageModel` (see the package's modules for each part): CF models and a feature base
(`stage.py`); a stacked XGBoost rating model (`rating.py`) whose RMSE on the holdout is the
promotion metric; lists from the candidates of three generators (EASE, RP3beta, the recently
popular) re-ranked by LambdaMART (`ranking.py`), with optional long-tail and diversity
re-ranking (`rerank.py`); and cold-start lists for users it has no history of
(`cold_start.py`). Hyperparameters are a `ModelParams` given to the constructor; a model is
complete once fitted or loaded.

`RankByRating` wraps a two-stage model and ranks every unseen movie by predicted rating alone:
as good a rating model, a poor list - the demo's deliberately bad canary.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np

from movierec.core.errors import ModelLoadError
from movierec.core.schema import MODEL_JSON, RANKER, RATING_MODEL, VARIANT_JSON
from movierec.model.cold_start import ColdStart
from movierec.model.data import TrainingData
from movierec.model.fitting import fit_ranker, fit_stage
from movierec.model.params import ModelParams
from movierec.model.ranking import Ranker, rank_users
from movierec.model.rating import RatingModel, fit_rating_model
from movierec.model.stage import CFStage, build_index

FORMAT = 5  # of the saved files: 2 = arrays as separate .npy files, 3 = a rating booster per
# case, 4 = the new-user booster without the demographics, 5 = RP3beta's rows (a generator)
USER_CHUNK = 512  # users ranked at once

Ids = Sequence[int] | np.ndarray
MovieIds = Sequence[str] | np.ndarray


class Recommender(ABC):
    """What every model offers: fit, predict ratings, recommend lists, save and load."""

    @abstractmethod
    def fit(self, data: TrainingData) -> Self:
        """Learn from `data`; returns the fitted model itself."""

    @abstractmethod
    def predict_ratings(self, user_ids: Ids, movie_ids: MovieIds) -> np.ndarray:
        """The predicted rating (1..5) of each (user, movie) pair."""

    @abstractmethod
    def recommend(self, user_ids: Ids, k: int = 20) -> dict[int, list[str]]:
        """For each user, up to k movies they have not seen, best first (cold-start lists
        for users without history)."""

    @abstractmethod
    def cold_start(self, user: Mapping[str, Any] | None = None, k: int = 20) -> list[str]:
        """The list for a user the model has no history of."""

    @property
    @abstractmethod
    def known_users(self) -> np.ndarray:
        """The users the model has history of."""

    @property
    @abstractmethod
    def known_movies(self) -> np.ndarray:
        """The movies the model has history of."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What the registry records: params, fit information, feature names."""

    @abstractmethod
    def save(self, directory: Path) -> list[str]:
        """Write portable files into `directory`; returns their names."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path) -> Self:
        """The model `save` wrote."""


@dataclass
class _Fitted:
    stage: CFStage
    rating: RatingModel
    ranker: Ranker
    cold: ColdStart


class TwoStageModel(Recommender):
    """CF + features -> stacked XGBoost ratings; merged candidates -> LambdaMART lists."""

    def __init__(self, params: ModelParams | None = None, *, threads: int = 2) -> None:
        self.params = params or ModelParams()
        self.threads = threads
        self.fit_info: dict[str, Any] = {}
        self._fitted: _Fitted | None = None

    @property
    def parts(self) -> _Fitted:
        if self._fitted is None:
            raise RuntimeError("the model is not fitted: call fit() or load() first")
        return self._fitted

    @property
    def stage(self) -> CFStage:
        return self.parts.stage

    # ---- fitting -----------------------------------------------------------------------------
    def fit(self, data: TrainingData) -> Self:
        start = time.perf_counter()
        p, threads = self.params, self.threads
        # CF models and feature base, over every user and movie the data names
        stage = fit_stage(data, build_index(data), p, threads)
        # Rating model: XGBoost on out-of-fold features
        rating = fit_rating_model(data, stage, p, threads)
        # Ranker: LambdaMART, trained on a split of the training data
        ranker = fit_ranker(data, p, threads)
        # Cold start
        cold = ColdStart.fit(data)
        self._fitted = _Fitted(stage, rating, ranker, cold)
        self.fit_info = {
            "rows": len(data.ratings),
            "interactions": len(data.interactions),
            "rating_model": rating.info,
            "ranker": ranker.info,
            "seconds": round(time.perf_counter() - start, 2),
        }
        return self

    # ---- inference ---------------------------------------------------------------------------
    def predict_ratings(self, user_ids: Ids, movie_ids: MovieIds) -> np.ndarray:
        """A side the model has no history of is predicted from what is known of it (a new
        user: the movie's statistics and the user's demographics; a new movie: the user's
        statistics, its genres and year), as the rating model learned on its cold rows."""
        pairs = self.stage.pairs(np.asarray(user_ids), np.asarray(movie_ids))
        return np.clip(self.parts.rating.predict(self.stage, pairs), 1.0, 5.0)

    def recommend(self, user_ids: Ids, k: int = 20) -> dict[int, list[str]]:
        parts = self.parts
        users = np.asarray(user_ids)
        known = np.isin(users, self.known_users)
        out: dict[int, list[str]] = {}
        for uid in users[~known]:
            out[int(uid)] = self.cold_start({"user_id": int(uid)}, k)
        warm = users[known]
        for start in range(0, warm.size, USER_CHUNK):
            chunk = warm[start : start + USER_CHUNK]
            u = parts.stage.index.uidx(chunk)
            out.update(
                rank_users(parts.stage, parts.rating, parts.ranker, self.params, u, chunk, k)
            )
        return out

    def cold_start(self, user: Mapping[str, Any] | None = None, k: int = 20) -> list[str]:
        return self.parts.cold.recommend(user, k)

    @property
    def known_users(self) -> np.ndarray:
        return self.stage.index.users[self.stage.users_with_history()]

    @property
    def known_movies(self) -> np.ndarray:
        seen = np.diff(self.stage.seen.tocsc().indptr) > 0
        return self.stage.index.movies[seen]

    def with_reranking(self, longtail_min_share: float, genre_diversity: float) -> TwoStageModel:
        """The same fitted model with other re-ranking knobs (they need no refit)."""
        params = self.params.replace(
            longtail_min_share=longtail_min_share, genre_diversity=genre_diversity
        )
        other = TwoStageModel(params, threads=self.threads)
        other._fitted, other.fit_info = self.parts, self.fit_info
        return other

    def describe(self) -> dict[str, Any]:
        return {
            "params": self.params.as_dict(),
            "fit_info": self.fit_info,
            "feature_names": self.parts.rating.feature_names,
        }

    # ---- persistence -------------------------------------------------------------------------
    def save(self, directory: Path) -> list[str]:
        """Arrays as uncompressed `.npy` files (memory-mappable), boosters as XGBoost JSON,
        the rest in `model.json`; returns the file names."""
        parts = self.parts
        directory.mkdir(parents=True, exist_ok=True)
        names, stage_scalars = parts.stage.save(directory)
        names += parts.rating.save(directory, RATING_MODEL)
        names.append(MODEL_JSON)
        if parts.ranker.save(directory / RANKER):
            names.append(RANKER)
        meta = {
            "format": FORMAT,
            "params": self.params.as_dict(),
            "threads": self.threads,
            "feature_names": parts.rating.feature_names,
            "rank_feature_names": parts.ranker.feature_names,
            "cold_start": parts.cold.to_json(),
            "stage": stage_scalars,
            "fit_info": self.fit_info,
        }
        (directory / MODEL_JSON).write_text(json.dumps(meta, default=str))
        return names

    @classmethod
    def load(cls, directory: Path, *, mmap: bool = False) -> Self:
        """The saved model; with `mmap`, its arrays are memory-mapped read-only."""
        meta = json.loads((directory / MODEL_JSON).read_text())
        if meta.get("format") != FORMAT:
            raise ModelLoadError(
                f"{directory}: model files of format {meta.get('format')}, expected {FORMAT}"
            )
        model = cls(ModelParams.from_dict(meta["params"]), threads=int(meta["threads"]))
        stage = CFStage.load(directory, meta["stage"], model.params, mmap)
        rating = RatingModel.load(directory, RATING_MODEL, meta["feature_names"])
        ranker = Ranker.load(directory / RANKER, meta["rank_feature_names"])
        model._fitted = _Fitted(stage, rating, ranker, ColdStart.from_json(meta["cold_start"]))
        model.fit_info = meta["fit_info"]
        return model


class RankByRating(Recommender):
    """The known-poor list: every unseen movie ranked by the wrapped model's predicted rating
    alone. Ratings, cold start and files are the wrapped model's."""

    RANKING = "predicted rating only (deliberately poor)"

    def __init__(self, model: TwoStageModel | None = None) -> None:
        self.model = model or TwoStageModel()

    def fit(self, data: TrainingData) -> Self:
        self.model.fit(data)
        return self

    def predict_ratings(self, user_ids: Ids, movie_ids: MovieIds) -> np.ndarray:
        return self.model.predict_ratings(user_ids, movie_ids)

    def recommend(self, user_ids: Ids, k: int = 20) -> dict[int, list[str]]:
        stage = self.model.stage
        movies = stage.index.movies
        known = set(self.known_users.tolist())
        out = {}
        for uid in np.asarray(user_ids):
            if int(uid) not in known:
                out[int(uid)] = self.cold_start({"user_id": int(uid)}, k)
                continue
            pred = self.model.predict_ratings(np.full(movies.size, uid), movies)
            row = int(stage.index.uidx(np.array([uid]))[0])
            pred[stage.seen[row].indices] = -np.inf
            out[int(uid)] = list(movies[np.argsort(-pred, kind="stable")[:k]])
        return out

    def cold_start(self, user: Mapping[str, Any] | None = None, k: int = 20) -> list[str]:
        return self.model.cold_start(user, k)

    @property
    def known_users(self) -> np.ndarray:
        return self.model.known_users

    @property
    def known_movies(self) -> np.ndarray:
        return self.model.known_movies

    def describe(self) -> dict[str, Any]:
        described = self.model.describe()
        described["params"] = described["params"] | {"ranking": self.RANKING}
        return described

    def save(self, directory: Path) -> list[str]:
        names = self.model.save(directory)
        (directory / VARIANT_JSON).write_text(json.dumps({"ranking": self.RANKING}))
        return [*names, VARIANT_JSON]

    @classmethod
    def load(cls, directory: Path, *, mmap: bool = False) -> Self:
        return cls(TwoStageModel.load(directory, mmap=mmap))


def load_recommender(directory: Path, *, mmap: bool = False) -> Recommender:
    """Whichever model a folder holds: the rank-by-rating variant or the two-stage model."""
    if (directory / VARIANT_JSON).exists():
        return RankByRating.load(directory, mmap=mmap)
    return TwoStageModel.load(directory, mmap=mmap)
