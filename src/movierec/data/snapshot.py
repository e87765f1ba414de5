"""Training snapshots: the exact rows a training run uses, as an immutable, content-addressed
file registered in data provenance, so any model traces back to its data."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from movierec.core.files import fsync_dir, sha256_file
from movierec.core.provenance import DataRecord, append_data, find_data
from movierec.core.settings import Settings
from movierec.data.lake import LakeState


@dataclass
class DataSnapshot:
    data_id: str
    path: Path
    sha256: str
    rows: int
    users: int


def snapshot_training_data(
    settings: Settings, interactions: pd.DataFrame, source: dict[str, object] | None = None
) -> DataSnapshot:
    """Write the exact rows a training run uses as an immutable, content-addressed file
    `data/training/<data_id>.parquet` and register it in `models/data_provenance.csv`."""
    frame = interactions.sort_values(["user_id", "movie_id"], ignore_index=True)
    folder = settings.data_path / "training"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".snapshot-{os.getpid()}.parquet"
    frame.to_parquet(tmp, index=False)
    digest = sha256_file(tmp)
    data_id = digest[:16]
    path = folder / f"{data_id}.parquet"
    if path.exists():
        tmp.unlink()
    else:
        os.replace(tmp, path)
        fsync_dir(folder)
    if find_data(settings, data_id) is None:
        ts = frame["last_ts"] if "last_ts" in frame else pd.Series(dtype="datetime64[us, UTC]")
        append_data(
            settings,
            DataRecord(
                data_id=data_id,
                path=str(path.relative_to(settings.home)),
                sha256=digest,
                rows=len(frame),
                columns=list(frame.columns),
                missing_values={str(c): int(v) for c, v in frame.isna().sum().items()},
                date_range_start=str(ts.min()) if len(ts) else "",
                date_range_end=str(ts.max()) if len(ts) else "",
                created_at=datetime.now(UTC).isoformat(),
                source=source or _lake_positions(settings),
            ),
        )
    return DataSnapshot(data_id, path, digest, len(frame), int(frame["user_id"].nunique()))


def _lake_positions(settings: Settings) -> dict[str, object]:
    """Where the lake's sources were read up to: the data's origin, in its provenance."""
    positions = LakeState.load(settings).positions
    return {"lake_positions": {key: p.to_json() for key, p in positions.items()}}
