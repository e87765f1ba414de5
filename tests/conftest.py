"""Shared fixtures: settings in a temporary home, real MovieLens fetched once per session,
and the tiny checker-board dataset with a known answer (and a model fitted on it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from movierec.core.threads import share_cores

# Before XGBoost or implicit is imported (OpenMP and OpenBLAS read these once, when loaded),
# in this process and in every service or CLI process a test starts: waiting threads sleep
# instead of spinning, and BLAS runs on the calling thread, as implicit asks. With the two
# cores shared (pytest-xdist workers, other processes), spinning threads made a tuned fit of
# the block dataset take 6.5 s instead of 2.4 s.
share_cores()
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402

from movierec.core.files import exclusive_lock  # noqa: E402
from movierec.core.settings import Settings  # noqa: E402
from movierec.model.recommender import TwoStageModel  # noqa: E402
from movierec.model.training.fit import fit_two_stage  # noqa: E402
from tests.modelkit import FAST, block_data, block_ratings_frame  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache"

# Hypothesis' 200 ms deadline per example times the machine, not the code: with the cores
# shared (two xdist workers, other processes) a correct example took 438 ms and failed.
hypothesis_settings.register_profile("movierec", deadline=None)
hypothesis_settings.load_profile("movierec")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


def make_settings(home: Path, **overrides: object) -> Settings:
    """Settings for a test: everything under `home`, downloads cached in the repo's .cache,
    no GroupLens attempt (unreachable here: it would only cost a time-out)."""
    base: dict[str, object] = {"cache_dir": CACHE, "grouplens_url": ""}
    base.update(overrides)
    return Settings.from_env({}, home=home, **base)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


def _fetched(dataset: str) -> Path:
    """Fetched once into .cache/test-data: the lock keeps pytest-xdist workers (and other
    checkouts sharing the cache) from writing the tables at the same time."""
    from movierec.data.movielens import dataset_dir, fetch

    s = make_settings(CACHE / "test-data")
    with exclusive_lock(CACHE / "test-data" / f"{dataset}.lock", wait=True):
        fetch(s, dataset)
    return dataset_dir(s, dataset)


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """ml-100k's canonical tables, fetched once into .cache/test-data."""
    return _fetched("ml-100k")


@pytest.fixture(scope="session")
def ml1m_dir() -> Path:
    return _fetched("ml-1m")


@pytest.fixture
def ml100k_settings(tmp_path: Path, ml100k_dir: Path) -> Settings:
    """Settings whose home already holds the fetched ml-100k tables."""
    s = make_settings(tmp_path)
    shutil.copytree(ml100k_dir, s.datasets_path / "ml-100k")
    return s


@pytest.fixture
def block_ratings() -> pd.DataFrame:
    """Two blocks: users 0-9 watch only movies a0-a9, users 10-19 only b0-b9; each user has
    rated 6 of their block's 10 movies (3 to 5 stars), so the known answer is: the 4 unseen
    movies of a user's own block come first."""
    return block_ratings_frame()


@pytest.fixture(scope="session")
def block_model() -> TwoStageModel:
    """The two-stage model fitted on the block dataset, once per session (read it, never
    change it)."""
    return fit_two_stage(block_data(block_ratings_frame()), FAST)


# The files that take longest start first, then the other files with slow tests, then the
# rest, so that pytest-xdist (scripts/test.sh: a file per worker, this order kept) never
# starts a long file near the end while the other worker idles.
LONGEST_FIRST = ("tests/integration/test_lifecycle.py", "tests/integration/test_retrain.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def file_of(item: pytest.Item) -> str:
        return item.nodeid.split("::")[0]

    slow_files = {file_of(i) for i in items if i.get_closest_marker("slow")}
    rank = {path: n for n, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda i: (rank.get(file_of(i), len(rank)), file_of(i) not in slow_files))
