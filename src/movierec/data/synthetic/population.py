"""The synthetic site's movies, users and interactions, drawn a chunk of users at a time and
spilled to files sorted by time bucket (`spill`)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from movierec.core.errors import DataValidationError
from movierec.core.progress import Progress
from movierec.data.slugs import slugify
from movierec.data.synthetic.shape import SiteShape

INTERACTIONS_PER_CHUNK = 500_000  # users drawn together (their candidates: 3x this)
INTERACTIONS_PER_BUCKET = 200_000  # time buckets written together (about 2 M lines)
CANDIDATES = 3  # movies drawn by popularity per interaction, the taste picks among them
RECO_POOL = 512  # recommendation lists are drawn from the most popular movies
RECO_ITEMS = 20
SERVERS = ("10.0.0.5:8082", "10.0.0.6:8082")

RECORD = np.dtype(
    [
        ("first", "i8"),  # the interaction's first event (seconds since the epoch)
        ("start", "i8"),  # its first watch minute
        ("user", "i8"),
        ("movie", "i4"),
        ("minutes", "i4"),
        ("rating", "i1"),  # 1..5; drawn for every interaction, written when rated
        ("rated", "?"),
        ("reco", "?"),  # a recommendation line at `first`
        ("hit", "?"),  # that list holds the watched movie
        ("look", "i8"),  # how that line looks (`Look`), drawn with the interaction
    ]
)


@dataclass(frozen=True)
class SyntheticSpec:
    """The site to make. Only the sizes and the seed are on the command line."""

    users: int
    movies: int
    interactions: int
    seed: int = 42
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    days: float = 365.0
    factors: int = 8
    taste: float = 3.0  # how strongly affinity picks movies (0: popularity alone)
    affinity_sd: float = 0.5  # the affinity's share of a rating (rating points)
    rated_share: float = 1.0  # ml-1m: every interaction has a rating
    reco_share: float = 0.2  # interactions with a recommendation line before them
    reco_hit: float = 0.5  # of those, lists that hold the movie then watched
    mean_minutes: float = 8.0  # as `replay`: 1 + Poisson(mean x (0.4 + 0.2 x rating))
    new_movies: float = 0.1  # share of movies released during the period

    def check(self) -> None:
        if min(self.users, self.movies, self.interactions) < 1:
            raise DataValidationError(f"users, movies and interactions must be >= 1: {self}")
        if self.movies < 20:
            raise DataValidationError(f"need at least 20 movies (a list's length): {self.movies}")


@dataclass(frozen=True)
class Catalog:
    """The movies: table, slugs, and what drives choices and ratings."""

    table: pd.DataFrame
    slugs: pa.Array
    slug_rank: np.ndarray  # position of each movie's slug in sorted order (the tables' order)
    cdf: np.ndarray  # popularity, cumulative
    factors: np.ndarray
    bias: np.ndarray
    released: np.ndarray  # seconds since the epoch


@dataclass(frozen=True)
class Plan:
    shape: SiteShape
    site: SyntheticSpec
    catalog: Catalog
    counts: np.ndarray  # interactions per user
    t0: int
    t1: int
    buckets: int
    cuts: np.ndarray = field(default_factory=lambda: np.zeros(4))  # latent rating -> 1..5

    @property
    def bucket_seconds(self) -> int:
        return -(-(self.t1 - self.t0) // self.buckets)

    @property
    def noise_sd(self) -> float:
        s, a = self.shape, self.site.affinity_sd
        return math.sqrt(max(s.rating_sd**2 - s.user_mean_sd**2 - s.movie_mean_sd**2 - a**2, 0.05))


# ---- the catalog and the users ----------------------------------------------------------------


def make_catalog(shape: SiteShape, site: SyntheticSpec, rng: np.random.Generator) -> Catalog:
    m = site.movies
    picks = shape.movies.iloc[rng.integers(0, len(shape.movies), m)].reset_index(drop=True)
    t0 = epoch(site.start)
    period = int(site.days * 86400)
    new = rng.random(m) < site.new_movies
    released = np.where(new, t0 + rng.integers(0, max(1, period - 86400), m), 0)
    year = picks["year"].astype("Int64").to_numpy(dtype=float, na_value=np.nan)
    year = np.where(new, pd.to_datetime(released, unit="s").year, year)
    base = [_bare_title(t) for t in picks["title"]]
    titles = [f"{b} {i + 1}" for i, b in enumerate(base)]
    years = [None if np.isnan(y) else int(y) for y in year]
    slugs = [slugify(t, y) for t, y in zip(titles, years, strict=True)]
    table = pd.DataFrame(
        {
            "movie_id": slugs,
            "source_id": [str(i + 1) for i in range(m)],
            "source_ids": [[str(i + 1)] for i in range(m)],
            "title": titles,
            "year": pd.array(years, dtype="Int64"),
            "genres": [sorted(g) for g in picks["genres"]],
        }
    )
    popularity = _popularity(shape.movie_curve, m, rng)
    factors, bias = _movie_taste(shape, site, table["genres"], popularity, rng)
    order = np.argsort(np.array(slugs, dtype=object), kind="stable")
    rank = np.empty(m, dtype=np.int64)
    rank[order] = np.arange(m)
    return Catalog(
        table.iloc[order].reset_index(drop=True),
        pa.array(slugs, pa.string()),
        rank,
        np.cumsum(popularity) / popularity.sum(),
        factors,
        bias,
        released,
    )


def _bare_title(title: str) -> str:
    """A real title without its bracketed endings (`Jackal, The (1997)`; the slug adds the
    year) and with a trailing article put back in front (`The Jackal`), as the slugs do."""
    bare = title.split(" (", 1)[0].strip() or title
    for article in ("The", "A", "An"):
        if bare.endswith(f", {article}"):
            return f"{article} {bare[: -len(article) - 2]}"
    return bare


def _popularity(curve: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """m weights along the real rank-count curve, in a random order of the movies."""
    at = np.interp(np.linspace(0, len(curve) - 1, m), np.arange(len(curve)), curve)
    return rng.permutation(np.maximum(at, 0.5))


def _movie_taste(
    shape: SiteShape,
    site: SyntheticSpec,
    genres: pd.Series,
    popularity: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Latent factors (half from genres, half the movie's own) and a rating bias that is
    higher for popular movies as much as in the real data."""
    names = sorted({g for gs in genres for g in gs})
    per_genre = rng.normal(0.0, 1.0, (len(names), site.factors))
    index = {g: i for i, g in enumerate(names)}
    from_genres = np.zeros((len(genres), site.factors))
    for i, gs in enumerate(genres):
        if gs:
            from_genres[i] = per_genre[[index[g] for g in gs]].mean(axis=0)
    own = rng.normal(0.0, 1.0, (len(genres), site.factors))
    factors = (from_genres / max(from_genres.std(), 1e-9) + own) / math.sqrt(2.0)
    logp = np.log(popularity)
    z = (logp - logp.mean()) / max(logp.std(), 1e-9)
    rho = shape.popular_rated_higher
    bias = shape.movie_mean_sd * (rho * z + math.sqrt(1 - rho**2) * rng.normal(0, 1, len(z)))
    return factors, bias


def user_counts(shape: SiteShape, site: SyntheticSpec, rng: np.random.Generator) -> np.ndarray:
    """Interactions per user: lognormal with the real spread, summing to about the asked
    total (each user at least one, at most the catalog)."""
    weights = np.exp(rng.normal(0.0, shape.user_log_sd, site.users))
    share = np.cumsum(weights) / weights.sum() * site.interactions
    counts = np.diff(np.floor(share), prepend=0.0).astype(np.int64)
    return np.clip(counts, 1, site.movies)


def users_table(shape: SiteShape, n: int, rng: np.random.Generator) -> pd.DataFrame:
    picks = shape.users.iloc[rng.integers(0, len(shape.users), n)].reset_index(drop=True)
    return pd.DataFrame(
        {
            "user_id": np.arange(1, n + 1, dtype=np.int64),
            "age": picks["age"].to_numpy(dtype=np.int64),
            "gender": picks["gender"].astype(str).to_numpy(),
            "occupation": picks["occupation"].astype(str).to_numpy(),
        }
    )


def epoch(ts: datetime) -> int:
    return int(ts.timestamp())


# ---- interactions, a chunk of users at a time ------------------------------------------------


def make_plan(shape: SiteShape, site: SyntheticSpec) -> Plan:
    rng = np.random.default_rng([site.seed, 0])
    catalog = make_catalog(shape, site, rng)
    counts = user_counts(shape, site, rng)
    t0 = epoch(site.start)
    buckets = max(1, min(100_000, -(-int(counts.sum()) // INTERACTIONS_PER_BUCKET)))
    plan = Plan(shape, site, catalog, counts, t0, t0 + int(site.days * 86400), buckets)
    # the cut points that give the real histogram, measured on a pilot draw of users
    pilot = np.arange(min(site.users, 5_000))
    _, _, latent = _choose(plan, pilot, np.random.default_rng([site.seed, 1]))
    cuts = np.quantile(latent, np.cumsum(shape.rating_shares)[:-1])
    return Plan(shape, site, catalog, counts, t0, plan.t1, buckets, cuts)


def _choose(
    plan: Plan, users: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each user's movies (positions in `users`, movie indices) and latent ratings: candidates
    drawn by popularity, the best of them by taste x affinity + Gumbel noise (a draw without
    replacement in proportion to popularity x exp(taste x affinity))."""
    cat, site = plan.catalog, plan.site
    want = plan.counts[users]
    taste = rng.normal(0.0, 1.0 / math.sqrt(site.factors), (len(users), site.factors))
    user_bias = rng.normal(0.0, plan.shape.user_mean_sd, len(users))
    cu = np.repeat(np.arange(len(users)), CANDIDATES * want + 5)
    cm = np.minimum(np.searchsorted(cat.cdf, rng.random(cu.size), side="right"), len(cat.cdf) - 1)
    affinity = np.einsum("ij,ij->i", taste[cu], cat.factors[cm])
    score = site.taste * affinity + rng.gumbel(size=cu.size)
    # one candidate per (user, movie): its best score
    o = np.lexsort((-score, cm, cu))
    cu, cm, score, affinity = cu[o], cm[o], score[o], affinity[o]
    first = np.r_[True, (cu[1:] != cu[:-1]) | (cm[1:] != cm[:-1])]
    cu, cm, score, affinity = cu[first], cm[first], score[first], affinity[first]
    # each user's best `want`
    o = np.lexsort((-score, cu))
    cu, cm, affinity = cu[o], cm[o], affinity[o]
    rank = np.arange(cu.size) - np.searchsorted(cu, cu)
    keep = rank < want[cu]
    cu, cm, affinity = cu[keep], cm[keep], affinity[keep]
    noise = rng.normal(0.0, plan.noise_sd, cu.size)
    latent = user_bias[cu] + cat.bias[cm] + site.affinity_sd * affinity + noise
    return cu, cm, latent


def _records(plan: Plan, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The interactions of some users, with their times, minutes, ratings and lines."""
    site, period = plan.site, plan.t1 - plan.t0
    cu, cm, latent = _choose(plan, users, rng)
    rating = (np.searchsorted(plan.cuts, latent, side="right") + 1).astype(np.int8)
    # arrival over the period, activity over a real span; a movie released during it is
    # watched after its release, or not at all by a user who left before
    arrive = plan.t0 + rng.random(len(users)) * 0.9 * period
    span = rng.choice(plan.shape.span_shares, len(users)) * period
    span = np.maximum(span, np.bincount(cu, minlength=len(users)) * 3 * 3600)
    leave = np.minimum(arrive + span, plan.t1 - 6 * 3600)
    earliest = np.maximum(arrive[cu], plan.catalog.released[cm] + 600)
    start = earliest + (leave[cu] - earliest) * rng.random(cu.size)
    kept = start < leave[cu]
    cu, cm, rating, start = cu[kept], cm[kept], rating[kept], start[kept]
    out = np.empty(cu.size, dtype=RECORD)
    out["start"] = start.astype(np.int64)
    out["user"] = users[cu] + 1
    out["movie"] = cm
    out["minutes"] = 1 + rng.poisson(site.mean_minutes * (0.4 + 0.2 * rating))
    out["rating"] = rating
    out["rated"] = rng.random(cu.size) < site.rated_share
    out["reco"] = rng.random(cu.size) < site.reco_share
    out["hit"] = out["reco"] & (rng.random(cu.size) < site.reco_hit)
    out["first"] = out["start"] - np.where(out["reco"], rng.integers(1, 300, cu.size), 0)
    out["look"] = Look.draw(rng, cu.size).pack()
    return out


@dataclass(frozen=True)
class Look:
    """How a recommendation line looks: its list is 20 places of the popular pool, `at` +
    `step` x i (`step` odd, so distinct), the watched movie put at `slot` when the list is a
    hit; its server and latency. Drawn with the interaction so that the bytes do not depend
    on how the events are grouped; packed in one integer to travel with the event."""

    at: np.ndarray
    step: np.ndarray
    slot: np.ndarray
    server: np.ndarray
    latency: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, n: int) -> Look:
        return cls(
            rng.integers(0, RECO_POOL, n),
            2 * rng.integers(0, RECO_POOL // 2, n) + 1,
            rng.integers(0, RECO_ITEMS, n),
            rng.integers(0, len(SERVERS), n),
            np.round(np.exp(rng.normal(math.log(40.0), 0.5, n)))
            .clip(1, 2**20 - 1)
            .astype(np.int64),
        )

    def pack(self) -> np.ndarray:
        return self.at | self.step << 10 | self.slot << 20 | self.server << 25 | self.latency << 30

    @classmethod
    def unpack(cls, packed: np.ndarray) -> Look:
        fields = [(packed >> s) & mask for s, mask in ((0, 1023), (10, 1023), (20, 31), (25, 31))]
        return cls(fields[0], fields[1], fields[2], fields[3], packed >> 30)


def _user_chunks(counts: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive users with about INTERACTIONS_PER_CHUNK interactions together."""
    group = (np.cumsum(counts) - counts) // INTERACTIONS_PER_CHUNK
    bounds = [*np.flatnonzero(np.r_[True, group[1:] != group[:-1]]).tolist(), len(counts)]
    return list(itertools.pairwise(bounds))


def spill(plan: Plan, folder: Path) -> list[tuple[Path, np.ndarray]]:
    """Draw every chunk of users; each chunk's records to a file sorted by time bucket, with
    where each bucket starts in it."""
    files = []
    chunks = _user_chunks(plan.counts)
    with Progress("synthetic: users", total=len(plan.counts), unit="users") as bar:
        for c, (lo, hi) in enumerate(chunks):
            rng = np.random.default_rng([plan.site.seed, 2, c])
            rec = _records(plan, np.arange(lo, hi), rng)
            bucket = _bucket(plan, rec["first"])
            o = np.argsort(bucket, kind="stable")
            path = folder / f"{c:06d}.npy"
            np.save(path, rec[o])
            files.append((path, np.searchsorted(bucket[o], np.arange(plan.buckets + 1))))
            bar.update(hi - lo)
    return files


def _bucket(plan: Plan, ts: np.ndarray) -> np.ndarray:
    return np.clip((ts - plan.t0) // plan.bucket_seconds, 0, plan.buckets - 1)
