"""The precomputed lists written per partition of users equal the lists of one call for
every user: the same arrays (`PrecomputedLists.build`) and the same table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from movierec.core.schema import RECOMMENDATIONS
from movierec.model.recommender import TwoStageModel
from movierec.model.training.cluster import PARTITION_SHARE, ClusterPlan, InProcess
from movierec.registry.lists import PrecomputedLists
from movierec.retrain.list_writer import USER_BYTES, partitions
from movierec.retrain.training import write_bundle_files


def _three_users_a_part() -> InProcess:
    return InProcess(ClusterPlan(worker_memory_gb=3 * USER_BYTES / PARTITION_SHARE / 2**30))


def test_partitions_follow_the_budget() -> None:
    parts = partitions(np.arange(22), _three_users_a_part())
    assert [p.size for p in parts] == [3] * 7 + [1]
    assert np.concatenate(parts).tolist() == list(range(22))


def test_lists_written_by_partition_equal_one_call_for_every_user(
    tmp_path: Path, block_model: TwoStageModel
) -> None:
    users = np.arange(22)  # 20 known, 2 new (cold-start lists)
    names, n_users = write_bundle_files(tmp_path, block_model, users, 5, _three_users_a_part())
    expected = block_model.recommend(users, 5)
    assert n_users == 22
    assert set(names) == {p.name for p in tmp_path.iterdir()}
    got = PrecomputedLists.load(tmp_path, mmap=False)
    want = PrecomputedLists.build(expected)
    np.testing.assert_array_equal(got.users, want.users)
    np.testing.assert_array_equal(got.items, want.items)
    np.testing.assert_array_equal(got.movies, want.movies)
    table = pd.read_parquet(tmp_path / RECOMMENDATIONS)
    assert len(table) == 22  # the rows' order is not a contract: each user's list is
    assert dict(zip(table["user_id"], table["items"], strict=True)) == {
        u: ",".join(v) for u, v in expected.items()
    }
