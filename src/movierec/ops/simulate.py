"""The traffic simulator: the streaming site's users, requesting, watching and rating.

Simulated users are the dataset's real users with their demographics. Their true tastes come
from a preference model fitted on ALL of their real ratings, later ones included: it is the
world, not our model, and nothing here is shared with the trainer (a low-rank SVD of the
bias-corrected rating matrix, `World`).

Two things draw a user to a movie, as in the real data: whether they would watch it at all
(the movie's percentile among the user's watch affinities, from a low-rank fit of who watched
what in the whole real data: people watch what people like them watch, and rarely an obscure
title however well rated) and how much they would like it (their true rating). A list that
ranks unseen movies by predicted rating alone scores well on the second and poorly on the
first, as it does offline on NDCG.

Each simulated request is a real HTTP `GET /recommend/<user>` to the running service. The
user then watches a recommended movie with a probability that grows with both and falls with
its position in the list (otherwise, sometimes, a popular movie they found elsewhere), for a
believable number of minutes, and sometimes rates it with a rating drawn around their true
preference. Everything is written as course-format events to
the event log (file or Kafka), which the DataPipeline ingests like any other source.

Clock: requests are sent in real time at `rate` per second (the served log records real time),
and each simulated session runs faster than real time: the watch and rate events that follow a
request are written at once, stamped with the simulated minutes at which they happen
(request time + a click delay of a second or two, then one line per minute watched). The same
seed gives the same users, choices and events for the same answers. The click comes before
the same user's next request even in a compressed run, so the evaluator's last-touch credit
(`movierec.release.online`) goes to the list that was clicked.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import requests

from movierec.core.files import append_lines
from movierec.core.progress import track
from movierec.core.settings import Settings
from movierec.data.events import format_rate, format_watch
from movierec.data.movielens import load_tables
from movierec.data.replay import kafka_producer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Behaviour:
    """How simulated users act. Probabilities are per recommended list."""

    click_base: float = 2.7  # scale of the chance to watch a list's most appealing movie
    click_slope: float = 2.0  # how fast that chance grows with true preference
    interest_sharpness: float = 20.0  # how fast it falls below a user's most-likely watches
    position_decay: float = 0.12  # attention falls with the list position
    attention: float = 0.2  # share of list items a user really considers
    outside_watch: float = 0.1  # chance to watch a popular movie not in the list instead
    rate_prob: float = 0.6  # chance to rate a watched movie
    rating_noise: float = 0.6  # sd of the rating around the true preference
    max_delay_seconds: float = 2.0  # a click starts the movie within this long of the list


@dataclass
class SimResult:
    requests: int = 0
    failed: int = 0
    slow: int = 0
    watches: int = 0
    clicks_on_list: int = 0
    ratings: int = 0
    lines: int = 0
    seconds: float = 0.0
    max_latency_ms: float = 0.0
    by_version: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        return self.__dict__.copy()


@dataclass
class _Outcome:
    """What one simulated request led to."""

    failed: bool = False
    latency_ms: float = 0.0
    version: str | None = None  # X-Model-Version of the answer
    watches: int = 0
    clicks: int = 0  # watches of a movie from the list
    ratings: int = 0


class World:
    """True preferences: rating ~ mu + b_u + b_i + U_u . V_i, fitted on every real rating;
    watch affinity ~ P_u . Q_i, a rank-`watch_rank` SVD of the 0/1 matrix of who rated what."""

    def __init__(
        self,
        ratings: pd.DataFrame,
        users: pd.DataFrame,
        rank: int = 16,
        seed: int = 0,
        watch_rank: int = 48,
    ):
        from scipy.sparse import csr_matrix
        from scipy.sparse.linalg import svds

        self.user_ids = np.sort(users["user_id"].unique())
        self.movie_ids = np.sort(ratings["movie_id"].astype(str).unique())
        u = np.searchsorted(self.user_ids, ratings["user_id"].to_numpy())
        m = np.searchsorted(self.movie_ids, ratings["movie_id"].astype(str).to_numpy())
        r = ratings["rating"].to_numpy(dtype=float)
        self.mu = float(r.mean())
        n_u, n_m = len(self.user_ids), len(self.movie_ids)
        # shrunk biases: a movie with two ratings does not get an extreme taste
        b_m = np.bincount(m, r - self.mu, n_m) / (np.bincount(m, minlength=n_m) + 10.0)
        b_u = np.bincount(u, r - self.mu - b_m[m], n_u) / (np.bincount(u, minlength=n_u) + 10.0)
        resid = r - self.mu - b_u[u] - b_m[m]
        mat = csr_matrix((resid, (u, m)), shape=(n_u, n_m))
        k = min(rank, min(n_u, n_m) - 1)
        left, s, right = svds(mat, k=k, random_state=seed)
        self.b_u, self.b_m = b_u, b_m
        self.U = left * np.sqrt(s)
        self.V = right.T * np.sqrt(s)
        counts = np.bincount(m, minlength=n_m).astype(float)
        self.popularity = counts / counts.sum()
        self._index = {mid: i for i, mid in enumerate(self.movie_ids)}
        self.activity = np.bincount(u, minlength=n_u).astype(float) + 1.0
        self.activity /= self.activity.sum()
        watched = csr_matrix((np.ones(len(u)), (u, m)), shape=(n_u, n_m))
        k = min(watch_rank, min(n_u, n_m) - 1)
        left, s, right = svds(watched, k=k, random_state=seed)
        self.P = left * s
        self.Q = right.T

    def interest(self, user_id: int, movie_ids: list[str]) -> np.ndarray:
        """Each movie's percentile (0..1) among the user's watch affinities for every movie;
        0.5 for an unknown user or movie."""
        out = np.full(len(movie_ids), 0.5)
        ui = int(np.searchsorted(self.user_ids, user_id))
        if ui >= len(self.user_ids) or self.user_ids[ui] != user_id:
            return out
        row = np.sort(self.Q @ self.P[ui])
        for j, mid in enumerate(movie_ids):
            mi = self._index.get(mid)
            if mi is not None:
                score = self.Q[mi] @ self.P[ui]
                out[j] = np.searchsorted(row, score, side="right") / len(row)
        return out

    def preference(self, user_id: int, movie_ids: list[str]) -> np.ndarray:
        """True expected ratings (unknown movies get the global mean)."""
        ui = int(np.searchsorted(self.user_ids, user_id))
        out = np.full(len(movie_ids), self.mu)
        if ui >= len(self.user_ids) or self.user_ids[ui] != user_id:
            return out
        for j, mid in enumerate(movie_ids):
            mi = self._index.get(mid)
            if mi is not None:
                out[j] = self.mu + self.b_u[ui] + self.b_m[mi] + self.U[ui] @ self.V[mi]
        return out


@dataclass(frozen=True)
class Traffic:
    """What the simulator sends: `requests_total` requests to `base_url` at about `rate` per
    second from `concurrency` threads; the users' events go to `out` (a file path or
    kafka:TOPIC; default `settings.data.event_source`)."""

    base_url: str
    requests_total: int
    rate: float = 50.0
    concurrency: int = 4
    seed: int | None = None
    out: str | None = None


def simulate(
    settings: Settings,
    traffic: Traffic,
    *,
    behaviour: Behaviour | None = None,
    world: World | None = None,
) -> SimResult:
    """Send the traffic's requests and write the users' events."""
    base_url, requests_total, rate = traffic.base_url, traffic.requests_total, traffic.rate
    concurrency, out = traffic.concurrency, traffic.out
    behaviour = behaviour or Behaviour()
    seed = settings.training.seed if traffic.seed is None else traffic.seed
    if world is None:
        tables = load_tables(settings, settings.data.dataset)
        world = World(tables.ratings, tables.users, seed=seed)
    rng = np.random.default_rng(seed)
    users = rng.choice(world.user_ids, size=requests_total, p=world.activity)
    sink = _open_sink(settings, out or settings.data.event_source)
    result = SimResult()
    lock = threading.Lock()
    session = requests.Session()
    start = time.perf_counter()
    interval = 1.0 / rate if rate > 0 else 0.0

    def one(i: int) -> None:
        due = start + i * interval
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        lines, stats = _one_request(
            session, base_url, int(users[i]), world, behaviour, np.random.default_rng([seed, i])
        )
        sink(lines)
        with lock:
            _add(result, stats, len(lines))

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for _ in track(
            pool.map(one, range(requests_total)), "simulate", requests_total, "requests"
        ):
            pass
    result.seconds = time.perf_counter() - start
    session.close()
    return result


def _add(result: SimResult, stats: _Outcome, lines: int) -> None:
    result.requests += 1
    result.lines += lines
    result.failed += int(stats.failed)
    result.slow += int(stats.latency_ms > 600)
    result.max_latency_ms = max(result.max_latency_ms, stats.latency_ms)
    result.watches += stats.watches
    result.clicks_on_list += stats.clicks
    result.ratings += stats.ratings
    version = stats.version or "none"
    result.by_version[version] = result.by_version.get(version, 0) + 1


def _one_request(
    session: requests.Session,
    base_url: str,
    user_id: int,
    world: World,
    b: Behaviour,
    rng: np.random.Generator,
) -> tuple[list[str], _Outcome]:
    t0 = time.perf_counter()
    now = datetime.now(UTC)
    stats = _Outcome()
    try:
        resp = session.get(f"{base_url}/recommend/{user_id}", timeout=5)
        ok = resp.status_code == 200
        items = resp.text.split(",") if ok and resp.text else []
        stats.version = resp.headers.get("X-Model-Version")
    except requests.RequestException as exc:
        log.warning("request for user %d failed: %s", user_id, exc)
        ok, items = False, []
    stats.latency_ms = (time.perf_counter() - t0) * 1000
    if not ok:
        stats.failed = True
        return [], stats
    chosen = _choose(items, user_id, world, b, rng)
    if chosen is None:
        return [], stats
    movie, from_list = chosen
    stats.watches = 1
    stats.clicks = int(from_list)
    pref = float(world.preference(user_id, [movie])[0])
    start = now + timedelta(seconds=float(rng.uniform(0.1, b.max_delay_seconds)))
    # people who like a movie watch more of it; 5-110 minutes
    minutes = int(np.clip(rng.normal(20 + 18 * (pref - 1), 15), 5, 110))
    lines = [format_watch(start + timedelta(minutes=k), user_id, movie, k) for k in range(minutes)]
    if rng.random() < b.rate_prob:
        rating = int(np.clip(np.rint(rng.normal(pref, b.rating_noise)), 1, 5))
        lines.append(
            format_rate(start + timedelta(minutes=minutes, seconds=30), user_id, movie, rating)
        )
        stats.ratings = 1
    return lines, stats


def take_probabilities(items: list[str], user_id: int, world: World, b: Behaviour) -> np.ndarray:
    """The chance that the user takes each item of a list when they come to it (true
    preference and watch interest, falling with the position)."""
    if not items:
        return np.zeros(0)
    pref = world.preference(user_id, items)
    interest = world.interest(user_id, items)
    position = np.exp(-b.position_decay * np.arange(len(items)))
    appeal = 1.0 / (1.0 + np.exp(-b.click_slope * (pref - 4.0)))
    appeal *= np.exp(b.interest_sharpness * (interest - 1.0))
    return np.clip(b.click_base * appeal * position, 0.0, 1.0) * b.attention


def click_probability(items: list[str], user_id: int, world: World, b: Behaviour) -> float:
    """The chance that a request showing `items` is clicked (the user watches a movie of the
    list): what `simulate` draws per request, in closed form."""
    return float(1.0 - np.prod(1.0 - take_probabilities(items, user_id, world, b)))


def _choose(
    items: list[str], user_id: int, world: World, b: Behaviour, rng: np.random.Generator
) -> tuple[str, bool] | None:
    """Which movie the user watches after seeing `items`, if any: (movie, came from list)."""
    p_take = take_probabilities(items, user_id, world, b)
    # each item is considered in order; the first one taken is watched
    for i in range(len(items)):
        if rng.random() < p_take[i]:
            return items[i], True
    if rng.random() < b.outside_watch:
        idx = int(rng.choice(len(world.movie_ids), p=world.popularity))
        return str(world.movie_ids[idx]), False
    return None


def _open_sink(settings: Settings, target: str) -> Callable[[list[str]], None]:
    """A thread-safe writer of event lines to a file (appended, flock'ed) or a Kafka topic."""
    if target.startswith("kafka:"):
        producer = kafka_producer(settings)
        topic = target[len("kafka:") :]

        def to_kafka(lines: list[str]) -> None:
            for line in lines:
                producer.produce(topic, line.encode(), key=line.split(",", 2)[1].encode())
            producer.poll(0)
            producer.flush(10)

        return to_kafka

    path = settings.path(target)

    def to_file(lines: list[str]) -> None:
        append_lines(path, lines)

    return to_file
