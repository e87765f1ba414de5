"""The model interface (`Recommender`) and the two-stage model that implements it.

`TwoStageModel` (see the package's modules for each part): CF models and a feature base
(`stage.py`); a stacked XGBoost rating model (`rating.py`) whose RMSE on the holdout is the
promotion metric; lists from the candidates of three generators (EASE, RP3beta, the recently
popular) re-ranked by LambdaMART (`ranking.py`), with optional long-tail and diversity
re-ranking (`rerank.py`); and cold-start lists for users it has no history of
(`cold_start.py`). A model is made by `model.training.fit` or loaded from the files `save`
wrote; this module never imports training code, so serving loads models through it alone.

Every model also answers from a history (`recommend_from_history`, as implicit's
`recommend(..., recalculate_user=True)`): the list of a user whose history is what the model
trained on plus movies it has not seen them watch - the fold-in the service uses for users
with events since the model's training cutoff. It is the model's own answer, computed here
once; serving only decides when to ask and keeps the answers.

`RankByRating` wraps a two-stage model and ranks every unseen movie by predicted rating alone:
as good a rating model, a poor list - the demo's deliberately bad canary.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from movierec.core.errors import ModelLoadError
from movierec.core.schema import MODEL_JSON, RANKER, RATING_MODEL, VARIANT_JSON
from movierec.model.cold_start import ColdStart, ColdUser
from movierec.model.params import ModelParams
from movierec.model.ranking import (
    ListModel,
    Ranker,
    history_candidates,
    rank_candidates,
    rank_users,
)
from movierec.model.rating import RatingModel
from movierec.model.stage import CFStage

FORMAT = 6  # of the saved files: 2 = arrays as separate .npy files, 3 = a rating booster per
# case, 4 = the new-user booster without the demographics, 5 = RP3beta's rows (a generator),
# 6 = EASE as its neighbours only (no dense `cf.ease_B`), read by the stage
USER_CHUNK = 512  # users ranked at once

Ids = Sequence[int] | np.ndarray
MovieIds = Sequence[str] | np.ndarray


class Recommender(ABC):
    """What every model offers: predict ratings, recommend lists (from what it was trained on
    or from a history), save and load. Models are made by `model.training.fit`."""

    @abstractmethod
    def predict_ratings(self, user_ids: Ids, movie_ids: MovieIds) -> np.ndarray:
        """The predicted rating (1..5) of each (user, movie) pair."""

    @abstractmethod
    def recommend(self, user_ids: Ids, k: int = 20) -> dict[int, list[str]]:
        """For each user, up to k movies they have not seen, best first (cold-start lists
        for users without history)."""

    @abstractmethod
    def recommend_from_history(
        self, user_id: int, history: Sequence[str], k: int = 20
    ) -> list[str]:
        """Up to k movies for the user, best first, none of them watched: their history is
        what the model trained on plus `history` (movies since; ids the model does not know
        are ignored). A user the model does not know gets a list from `history` alone."""

    @abstractmethod
    def cold_start(self, user: ColdUser | None = None, k: int = 20) -> list[str]:
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
    def load(cls, directory: Path, *, mmap: bool = False, threads: int | None = None) -> Self:
        """The model `save` wrote; with `mmap`, its arrays memory-mapped read-only (processes
        that load the same files share the pages); `threads` for its boosters (default: as
        saved)."""


@dataclass(frozen=True)
class TwoStageParts:
    """What a fitted two-stage model is made of."""

    stage: CFStage
    rating: RatingModel
    ranker: Ranker
    cold: ColdStart


class TwoStageModel(Recommender):
    """CF + features -> stacked XGBoost ratings; merged candidates -> LambdaMART lists."""

    def __init__(
        self,
        params: ModelParams,
        parts: TwoStageParts,
        *,
        threads: int = 2,
        fit_info: dict[str, Any] | None = None,
    ) -> None:
        self.params = params
        self.parts = parts
        self.threads = threads
        self.fit_info = fit_info or {}

    @property
    def stage(self) -> CFStage:
        return self.parts.stage

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
            out.update(rank_users(self._list_model(), u, chunk, k))
        return out

    def recommend_from_history(
        self, user_id: int, history: Sequence[str], k: int = 20
    ) -> list[str]:
        """As the precomputed lists are made, from the whole history and by the same code:
        candidates merged from the generators (`ranking.history_candidates`: EASE's and
        RP3beta's neighbours, the recently popular), re-ranked by the LambdaMART ranker, then
        the re-ranking knobs. A user with no new events gets exactly their precomputed list; a
        user the model does not know gets the same pipeline with unknown user features."""
        u, watched = self.history_positions(user_id, history)
        stage, p = self.stage, self.params
        n = len(stage.index.movies)
        if n - watched.size <= 0:
            return []
        ones = np.ones(watched.size, dtype=np.float32)
        seen = sp.csr_matrix((ones, watched, [0, watched.size]), shape=(1, n))
        latest, weight = self._latest(history), p.fold_in_recent_weight
        recent = None
        if weight > 0 and latest.size:  # scores are sums of rows: the latest rows again
            recent = sp.csr_matrix((np.ones(latest.size), latest, [0, latest.size]), shape=(1, n))
        cands = history_candidates(stage, seen, p, recent, weight)
        best = rank_candidates(self._list_model(), np.array([u]), cands, k)
        return [str(m) for m in stage.index.movies[best[0]]]

    def _list_model(self) -> ListModel:
        parts = self.parts
        return ListModel(parts.stage, parts.rating, parts.ranker, self.params)

    def _latest(self, history: Sequence[str]) -> np.ndarray:
        """Positions of the latest `fold_in_recent_movies` movies of `history` the model
        knows (`history` is oldest first)."""
        n = self.params.fold_in_recent_movies
        if n == 0 or not len(history):
            return np.empty(0, dtype=np.int64)
        known = self.stage.index.midx(np.asarray(history, dtype=str))
        return np.unique(known[known >= 0][-n:]).astype(np.int64)

    def history_positions(self, user_id: int, history: Sequence[str]) -> tuple[int, np.ndarray]:
        """The user's row in the model (-1: unknown) and the positions of the movies of their
        whole history (trained on, and `history`'s that the model knows)."""
        index = self.stage.index
        u = int(index.uidx(np.array([user_id]))[0])
        new = index.midx(np.asarray(history, dtype=str)) if len(history) else np.empty(0, int)
        trained = np.empty(0, dtype=np.int64)
        if u >= 0:
            seen = self.stage.seen
            trained = np.asarray(seen.indices[seen.indptr[u] : seen.indptr[u + 1]], np.int64)
        return u, np.union1d(trained, new[new >= 0]).astype(np.int64)

    def cold_start(self, user: ColdUser | None = None, k: int = 20) -> list[str]:
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
        return TwoStageModel(params, self.parts, threads=self.threads, fit_info=self.fit_info)

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
    def load(cls, directory: Path, *, mmap: bool = False, threads: int | None = None) -> Self:
        try:
            meta = json.loads((directory / MODEL_JSON).read_text())
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{directory}: unreadable {MODEL_JSON} ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else None
            raise ModelLoadError(f"{directory}: model files of format {found}, expected {FORMAT}")
        try:
            params = ModelParams.from_dict(meta["params"])
            stage = CFStage.load(directory, meta["stage"], params, mmap)
            rating = RatingModel.load(directory, RATING_MODEL, meta["feature_names"])
            ranker = Ranker.load(directory / RANKER, meta["rank_feature_names"])
            cold = ColdStart.from_json(meta["cold_start"])
        except (OSError, KeyError, ValueError) as exc:
            raise ModelLoadError(f"{directory}: unreadable model ({exc})") from None
        threads = int(meta["threads"]) if threads is None else threads
        for booster in (*rating.boosters.values(), ranker.booster):
            if booster is not None:
                booster.set_param({"nthread": threads})
        parts = TwoStageParts(stage, rating, ranker, cold)
        return cls(params, parts, threads=threads, fit_info=meta["fit_info"])


class RankByRating(Recommender):
    """The known-poor list: every unseen movie ranked by the wrapped model's predicted rating
    alone. Ratings, cold start and files are the wrapped model's."""

    RANKING = "predicted rating only (deliberately poor)"

    def __init__(self, model: TwoStageModel) -> None:
        self.model = model

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

    def recommend_from_history(
        self, user_id: int, history: Sequence[str], k: int = 20
    ) -> list[str]:
        _, watched = self.model.history_positions(user_id, history)
        movies = self.model.stage.index.movies
        pred = self.model.predict_ratings(np.full(movies.size, user_id), movies)
        pred[watched] = -np.inf
        order = np.argsort(-pred, kind="stable")[: min(k, movies.size - watched.size)]
        return [str(m) for m in movies[order]]

    def cold_start(self, user: ColdUser | None = None, k: int = 20) -> list[str]:
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
    def load(cls, directory: Path, *, mmap: bool = False, threads: int | None = None) -> Self:
        return cls(TwoStageModel.load(directory, mmap=mmap, threads=threads))


def saved_in(directory: Path) -> bool:
    """Whether a folder holds a model's files (a bundle may carry only lists)."""
    return (directory / MODEL_JSON).exists()


def load_recommender(
    directory: Path, *, mmap: bool = False, threads: int | None = None
) -> Recommender:
    """Whichever model a folder holds: the rank-by-rating variant or the two-stage model."""
    if (directory / VARIANT_JSON).exists():
        return RankByRating.load(directory, mmap=mmap, threads=threads)
    return TwoStageModel.load(directory, mmap=mmap, threads=threads)
