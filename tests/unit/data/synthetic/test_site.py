"""The synthetic site: the course format, time order, determinism, buckets that do not change
the bytes, the `synthetic` dataset's tables, the real rating mix, and taste that collaborative
filtering can learn (and that is gone when the taste is turned off)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from movierec.cli.main import main
from movierec.core.errors import DataNotFoundError, DataValidationError
from movierec.core.settings import Settings
from movierec.data.events import parse_lines
from movierec.data.lake import LakeState, parts_dir
from movierec.data.movielens import MovieLensTables, fetch, load_tables
from movierec.data.synthetic import population
from movierec.data.synthetic.population import SyntheticSpec
from movierec.data.synthetic.shape import SiteShape
from movierec.data.synthetic.site import generate

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]


def _real_like() -> MovieLensTables:
    """A small stand-in for ml-1m: skewed activity and popularity, a rating mix like ml-1m's,
    some users active for a moment and some for years."""
    rng = np.random.default_rng(0)
    n_users, n_movies = 200, 150
    users = pd.DataFrame(
        {
            "user_id": np.arange(1, n_users + 1),
            "age": rng.choice([18, 25, 35, 45], n_users),
            "gender": rng.choice(["M", "F"], n_users),
            "occupation": rng.choice(["other", "writer", "scientist"], n_users),
        }
    )
    titles = [
        f"Film {i}, The (19{50 + i % 50})" if i % 4 == 0 else f"Film {i} (1999)"
        for i in range(n_movies)
    ]
    movies = pd.DataFrame(
        {
            "movie_id": [f"film+{i}" for i in range(n_movies)],
            "title": titles,
            "year": pd.array([1950 + i % 50 for i in range(n_movies)], dtype="Int64"),
            "genres": [list(rng.choice(GENRES, 1 + i % 3, replace=False)) for i in range(n_movies)],
        }
    )
    weights = 1.0 / np.arange(1, n_movies + 1)
    rows = []
    for u in range(1, n_users + 1):
        n = int(np.clip(np.exp(rng.normal(3.0, 0.9)), 3, 120))
        seen = rng.choice(n_movies, n, replace=False, p=weights / weights.sum())
        start = rng.integers(0, 300 * 86400)
        span = rng.choice([60, 3600, 200 * 86400])
        for j in seen:
            rows.append(
                (
                    u,
                    f"film+{j}",
                    rng.choice(5, p=[0.06, 0.11, 0.26, 0.35, 0.22]) + 1,
                    start + rng.integers(0, span),
                )
            )
    ratings = pd.DataFrame(rows, columns=["user_id", "movie_id", "rating", "timestamp"])
    ratings["rating"] = ratings["rating"].astype("int8")
    ratings["timestamp"] = pd.to_datetime(ratings["timestamp"] + 946_684_800, unit="s", utc=True)
    return MovieLensTables(users, movies, ratings)


@pytest.fixture(scope="module")
def shape() -> SiteShape:
    return SiteShape.of(_real_like())


def _site(**kw: object) -> SyntheticSpec:
    base: dict[str, object] = {"users": 400, "movies": 120, "interactions": 8_000, "seed": 3}
    base.update(kw)
    return SyntheticSpec(**base)  # type: ignore[arg-type]


def _run(settings: Settings, shape: SiteShape, name: str, **kw: object) -> tuple[bytes, object]:
    out = settings.path(f"data/{name}.log")
    result = generate(settings, _site(**kw), str(out), shape)
    return out.read_bytes(), result


def test_every_line_parses_in_time_order_and_each_rating_follows_its_minutes(
    settings: Settings, shape: SiteShape
) -> None:
    text, result = _run(settings, shape, "a")
    lines = text.decode().splitlines()
    assert len(lines) == result.lines  # type: ignore[attr-defined]
    batch = parse_lines(lines)
    assert batch.rejects == []
    assert len(batch.rates) == result.ratings == result.interactions  # type: ignore[attr-defined]
    assert 0.9 * 8_000 <= result.interactions <= 8_000  # type: ignore[attr-defined]
    assert len(batch.recommendations) > 0
    assert batch.recommendations["items"].str.count(",").eq(19).all()  # 20 movies per list
    every = pd.concat([batch.watches["ts"], batch.rates["ts"], batch.recommendations["ts"]])
    order = np.concatenate(
        [batch.watches["line_no"], batch.rates["line_no"], batch.recommendations["line_no"]]
    )
    assert pd.Series(every.to_numpy()[np.argsort(order)]).is_monotonic_increasing
    # a rating comes a minute after the last of its minutes 0..m-1, one a minute
    w = batch.watches.groupby(["user_id", "movie_id"]).agg(
        n=("minute", "size"), top=("minute", "max"), first=("ts", "min"), last=("ts", "max")
    )
    both = batch.rates.set_index(["user_id", "movie_id"]).join(w, how="left")
    assert (both["n"] == both["top"] + 1).all()
    assert ((both["last"] - both["first"]) == pd.to_timedelta(both["top"], unit="min")).all()
    assert (both["ts"] - both["last"] == pd.Timedelta(minutes=1)).all()


def test_the_same_seed_writes_the_same_bytes_whatever_the_time_buckets(
    settings: Settings, shape: SiteShape, monkeypatch: pytest.MonkeyPatch
) -> None:
    one, _ = _run(settings, shape, "one")
    monkeypatch.setattr(population, "INTERACTIONS_PER_BUCKET", 97)  # about 80 buckets
    many, _ = _run(settings, shape, "many")
    assert many == one
    other, _ = _run(settings, shape, "other", seed=4)
    assert other != one


def test_the_dataset_tables_hold_the_logs_ratings_users_and_movies(
    settings: Settings, shape: SiteShape
) -> None:
    text, _ = _run(settings, shape, "t")
    tables = load_tables(settings, "synthetic")
    assert len(tables.users) == 400 and tables.users["user_id"].is_unique
    assert set(tables.users["gender"]) <= {"M", "F"}
    assert len(tables.movies) == 120 and tables.movies["movie_id"].is_unique
    assert tables.movies["title"].str.startswith("The Film").any()  # articles moved to the front
    rates = parse_lines(text.decode().splitlines()).rates
    expected = rates.rename(columns={"ts": "timestamp"})[
        ["user_id", "movie_id", "rating", "timestamp"]
    ].sort_values(["timestamp", "user_id", "movie_id"], ignore_index=True)
    pd.testing.assert_frame_equal(tables.ratings, expected, check_dtype=False)
    assert set(tables.ratings["movie_id"]) <= set(tables.movies["movie_id"])
    assert tables.ratings["user_id"].isin(tables.users["user_id"]).all()


def test_the_rating_mix_is_the_real_one(settings: Settings, shape: SiteShape) -> None:
    generate(settings, _site(users=800, interactions=20_000), "data/r.log", shape)
    shares = load_tables(settings, "synthetic").ratings["rating"].value_counts(normalize=True)
    assert np.abs(shares.sort_index().to_numpy() - shape.rating_shares).max() < 0.03


def _hits_over_popularity(ratings: pd.DataFrame) -> float:
    """Hit rate at 10 of item-item co-occurrence over the most popular, for each user's
    last movie held out: above 1 when the log has taste to learn."""
    r = ratings.sort_values(["user_id", "timestamp", "movie_id"])
    last = r.groupby("user_id").tail(1)
    train = r.drop(last.index)
    users = {u: i for i, u in enumerate(sorted(r["user_id"].unique()))}
    movies = {m: i for i, m in enumerate(sorted(r["movie_id"].unique()))}
    x = np.zeros((len(users), len(movies)))
    x[train["user_id"].map(users), train["movie_id"].map(movies)] = 1.0
    co = x.T @ x
    np.fill_diagonal(co, 0.0)
    co /= np.sqrt(np.outer(x.sum(0), x.sum(0))) + 1e-9
    scores = x @ co - 1e9 * x
    popular = np.argsort(-x.sum(0))
    truth = last.set_index("user_id")["movie_id"].map(movies)
    knn = pop = 0
    for u, i in users.items():
        knn += truth[u] in np.argsort(-scores[i])[:10]
        pop += truth[u] in [m for m in popular if x[i, m] == 0][:10]
    return knn / max(pop, 1)


def test_collaborative_filtering_has_taste_to_learn(settings: Settings, shape: SiteShape) -> None:
    kw = {"users": 1_500, "movies": 150, "interactions": 40_000, "new_movies": 0.0}
    generate(settings, _site(**kw), "data/c.log", shape)
    with_taste = _hits_over_popularity(load_tables(settings, "synthetic").ratings)
    generate(settings, _site(**kw, taste=0.0), "data/d.log", shape)
    without = _hits_over_popularity(load_tables(settings, "synthetic").ratings)
    assert with_taste > 1.15  # 1.25 and 1.26 with seeds 3 and 5
    assert without < 1.08  # 0.99 and 1.00


def test_sizes_are_checked(settings: Settings, shape: SiteShape) -> None:
    with pytest.raises(Exception, match="at least 20 movies"):
        generate(settings, _site(movies=5), "data/x.log", shape)
    assert not Path(settings.path("data/x.log")).exists()


def test_the_lake_shortcut_commits_what_ingesting_the_log_would(
    settings: Settings, shape: SiteShape
) -> None:
    text, result = _run(settings, shape, "l")
    parsed = parse_lines(text.decode().splitlines())
    direct = generate(settings, _site(), "unused", shape, to_lake=True)
    assert direct.lines == result.lines  # type: ignore[attr-defined]
    state = LakeState.load(settings)
    assert state.pending.accepted == result.lines  # type: ignore[attr-defined]
    for kind in ("watches", "rates", "recommendations"):
        parts = [n for n in state.parts if n.endswith(f"-{kind}.parquet")]
        frame = pd.concat([pd.read_parquet(parts_dir(settings) / n) for n in parts])
        expected = getattr(parsed, kind).drop(columns="line_no")
        pd.testing.assert_frame_equal(frame.reset_index(drop=True), expected.reset_index(drop=True))
    with pytest.raises(DataValidationError, match="empty lake"):
        generate(settings, _site(), "unused", shape, to_lake=True)


def test_the_synthetic_dataset_is_made_not_fetched(settings: Settings) -> None:
    with pytest.raises(DataNotFoundError, match="replay --synthetic"):
        fetch(settings, "synthetic")


def test_the_command_asks_for_every_size(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", "--synthetic", "--users", "10"]) == 1
    assert "--movies, --interactions" in capsys.readouterr().err
