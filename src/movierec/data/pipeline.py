"""The DataPipeline (`movierec ingest`): event lines in, validated and de-duplicated Parquet out.

Per batch of lines read from the source: parse (`events.parse_lines`), write the accepted
events and the rejected lines as part files under `data/lake/parts/`, then commit the batch by
replacing `data/lake/_state.json` atomically (the source position after the batch and the
list of committed parts). Only then is a Kafka offset committed to the broker. A run killed
at any moment therefore resumes exactly: parts not listed in the state are leftovers of a
dead run and are deleted; lines after the saved position are read again.

After the batches, the materialized tables are rebuilt from all committed parts, with
de-duplication: an identical event line counts once, a watch minute (user, movie, minute)
counts once in the minutes watched (the `watches` table keeps a re-watch, which the online
evaluator counts as a new viewing), and a user's latest rating of a movie wins. Tables
(`data/lake/`): `interactions` (user_id, movie_id, minutes, rating, first_ts, last_ts), `ratings`
(user_id, movie_id, rating, timestamp), `users` (user_id, first_seen, last_seen, events),
`watches` (ts, user_id, movie_id, minute), `recommendations` (ts, user_id, status, items,
latency_ms) and `flagged` (events excluded from training as suspected poisoning).

Rejected lines go to `data/quarantine.jsonl` with source, position and reason. Every run
writes a refresh report to `data/data_refresh_reports/`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from movierec.config import Settings
from movierec.data.events import parse_lines
from movierec.data.sources import Batch, open_source
from movierec.errors import DataNotFoundError
from movierec.fsutil import (
    atomic_write_bytes,
    atomic_write_json,
    exclusive_lock,
    fsync_dir,
    read_json,
    sha256_file,
)

log = logging.getLogger(__name__)

KINDS = ("watches", "rates", "recommendations", "quarantine")
TABLES = ("interactions", "ratings", "users", "watches", "recommendations", "flagged")


@dataclass
class LakeTables:
    interactions: pd.DataFrame
    ratings: pd.DataFrame
    users: pd.DataFrame
    watches: pd.DataFrame
    recommendations: pd.DataFrame
    flagged: pd.DataFrame


@dataclass
class IngestResult:
    source: str
    lines: int = 0
    accepted: int = 0
    quarantined: int = 0
    batches: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    deltas: dict[str, int] = field(default_factory=dict)
    report_path: str = ""
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass
class DataSnapshot:
    data_id: str
    path: Path
    sha256: str
    rows: int
    users: int


def _state_file(settings: Settings) -> Path:
    return settings.lake_path / "_state.json"


def _parts_dir(settings: Settings) -> Path:
    return settings.lake_path / "parts"


def read_state(settings: Settings) -> dict[str, Any]:
    return read_json(_state_file(settings), default={}) or {}


def _crash_hook(settings: Settings, where: str, batch: int) -> None:
    """Test hook: MOVIEREC_INGEST_CRASH_AT=`where:N` kills the process (SIGKILL) at `where`
    ("after-parts" or "after-commit") of the N-th batch of this run (1-based)."""
    if settings.ingest_crash_at:
        point, _, n = settings.ingest_crash_at.partition(":")
        if point == where and batch == int(n or 1):
            os.kill(os.getpid(), signal.SIGKILL)


def ingest(settings: Settings, source: str | None = None) -> IngestResult:
    """Read what is new in the source, commit it batch by batch, rebuild the tables."""
    spec = source or settings.event_source
    with exclusive_lock(settings.lake_path / ".ingest.lock", wait=True):
        return _ingest_locked(settings, spec)


def _source_key(spec: str, settings: Settings) -> str:
    return spec if spec.startswith("kafka:") else str(settings.path(spec).resolve())


def _ingest_locked(settings: Settings, spec: str) -> IngestResult:
    start = time.perf_counter()
    state = read_state(settings)
    key = _source_key(spec, settings)
    positions: dict[str, Any] = state.setdefault("positions", {})
    before_pos = dict(positions.get(key, {}))
    _remove_uncommitted_parts(settings, state)
    src = open_source(settings, spec, positions.get(key, {}))
    result = IngestResult(source=spec)
    reject_reasons: dict[str, int] = {}
    try:
        for batch in src.batches(settings.ingest_batch_lines):
            seq = int(state.get("seq", 0))
            names = _write_parts(settings, seq, batch, spec, reject_reasons, result)
            _crash_hook(settings, "after-parts", result.batches + 1)
            state["seq"] = seq + 1
            state.setdefault("parts", []).extend(names)
            positions[key] = batch.end
            atomic_write_json(_state_file(settings), state)
            _crash_hook(settings, "after-commit", result.batches + 1)
            src.commit(batch.end)
            result.batches += 1
    finally:
        src.close()
    previous = dict(state.get("totals", {}))
    old_ratings = _read_table(settings, "ratings")
    tables = materialize(settings, state)
    totals = _totals(tables)
    result.totals = totals
    result.deltas = {k: totals[k] - int(previous.get(k, 0)) for k in totals}
    new_ratings = _new_rows(old_ratings, tables.ratings)
    report = refresh_report(settings, result, reject_reasons, before_pos, positions.get(key, {}))
    report["drift"] = _drift(settings, old_ratings, new_ratings)
    report["poisoning"] = _poisoning(settings, old_ratings, new_ratings, tables)
    result.seconds = time.perf_counter() - start
    report["duration_seconds"] = round(result.seconds, 3)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    report_path = settings.data_path / "data_refresh_reports" / f"{stamp}.json"
    atomic_write_json(report_path, report)
    result.report_path = str(report_path)
    state["totals"] = totals
    state["last_report"] = str(report_path)
    atomic_write_json(_state_file(settings), state)
    log.info("ingested %d lines (%d quarantined) from %s", result.lines, result.quarantined, spec)
    return result


def _remove_uncommitted_parts(settings: Settings, state: dict[str, Any]) -> None:
    committed = set(state.get("parts", []))
    folder = _parts_dir(settings)
    if folder.exists():
        for p in folder.iterdir():
            if p.name not in committed:
                log.info("removing %s, left by an interrupted run", p.name)
                p.unlink()


def _write_parts(
    settings: Settings,
    seq: int,
    batch: Batch,
    spec: str,
    reasons: dict[str, int],
    result: IngestResult,
) -> list[str]:
    parsed = parse_lines(batch.lines)
    folder = _parts_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).isoformat()
    quarantine = pd.DataFrame(
        {
            "source": spec,
            "position": [batch.positions[r.line_no] for r in parsed.rejects],
            "line": [r.line for r in parsed.rejects],
            "reason": [r.reason for r in parsed.rejects],
            "ingested_at": now,
        },
        columns=["source", "position", "line", "reason", "ingested_at"],
    )
    frames = {
        "watches": parsed.watches,
        "rates": parsed.rates,
        "recommendations": parsed.recommendations,
        "quarantine": quarantine,
    }
    names = []
    for kind, frame in frames.items():
        if kind != "quarantine":
            frame = frame.drop(columns="line_no")
        name = f"{seq:08d}-{kind}.parquet"
        tmp = folder / f".{name}.tmp"
        frame.to_parquet(tmp, index=False)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, folder / name)
        names.append(name)
    fsync_dir(folder)
    for r in parsed.rejects:
        reason = r.reason.split(" '")[0].split(" (")[0]
        reasons[reason] = reasons.get(reason, 0) + 1
    result.lines += len(batch.lines)
    result.accepted += parsed.accepted
    result.quarantined += len(parsed.rejects)
    return names


# ---- materialized tables --------------------------------------------------------------------


def _read_parts(settings: Settings, state: dict[str, Any], kind: str) -> pd.DataFrame:
    files = [
        _parts_dir(settings) / n for n in state.get("parts", []) if n.endswith(f"-{kind}.parquet")
    ]
    frames = [pd.read_parquet(f) for f in files]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.read_parquet(files[0]) if files else pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def materialize(settings: Settings, state: dict[str, Any]) -> LakeTables:
    """Rebuild every table from the committed parts (idempotent)."""
    watches = _read_parts(settings, state, "watches")
    rates = _read_parts(settings, state, "rates")
    recs = _read_parts(settings, state, "recommendations")
    quarantine = _read_parts(settings, state, "quarantine")
    if watches.empty:
        watches = pd.DataFrame(
            {"ts": pd.Series(dtype="datetime64[us, UTC]"), "user_id": pd.Series(dtype="int64"),
             "movie_id": pd.Series(dtype="str"), "minute": pd.Series(dtype="int32")}
        )  # fmt: skip
    if rates.empty:
        rates = pd.DataFrame(
            {"ts": pd.Series(dtype="datetime64[us, UTC]"), "user_id": pd.Series(dtype="int64"),
             "movie_id": pd.Series(dtype="str"), "rating": pd.Series(dtype="int8")}
        )  # fmt: skip
    # every viewing stays (a re-watch is a new click); only a repeated line goes
    watches = watches.drop_duplicates().sort_values("ts", kind="stable", ignore_index=True)
    rates = rates.drop_duplicates().sort_values("ts", kind="stable")
    ratings = (
        rates.drop_duplicates(["user_id", "movie_id"], keep="last")
        .rename(columns={"ts": "timestamp"})[["user_id", "movie_id", "rating", "timestamp"]]
        .sort_values(["timestamp", "user_id", "movie_id"], ignore_index=True)
    )
    if len(recs):
        recs = recs.drop_duplicates().sort_values("ts", kind="stable", ignore_index=True)
    w = watches.groupby(["user_id", "movie_id"]).agg(
        minutes=("minute", "nunique"), first_ts=("ts", "min"), last_ts=("ts", "max")
    )
    r = ratings.set_index(["user_id", "movie_id"])
    inter = w.join(r[["rating", "timestamp"]], how="outer")
    inter["minutes"] = inter["minutes"].fillna(0).astype("int32")
    inter["rating"] = inter["rating"].astype("float32")
    inter["first_ts"] = inter["first_ts"].fillna(inter["timestamp"])
    inter["last_ts"] = inter[["last_ts", "timestamp"]].max(axis=1)
    interactions = inter.drop(columns="timestamp").reset_index()
    activity = pd.concat(
        [watches[["user_id", "ts"]], rates[["user_id", "ts"]]]
        + ([recs[["user_id", "ts"]]] if len(recs) else []),
        ignore_index=True,
    )
    users = (
        activity.groupby("user_id")
        .agg(first_seen=("ts", "min"), last_seen=("ts", "max"), events=("ts", "size"))
        .reset_index()
    )
    flagged = _read_table(settings, "flagged")
    if flagged is None:
        flagged = pd.DataFrame(
            {"user_id": pd.Series(dtype="int64"), "movie_id": pd.Series(dtype="str")}
        )
    tables = LakeTables(interactions, ratings, users, watches, recs, flagged)
    for name in TABLES:
        _write_table(settings, name, getattr(tables, name))
    _write_quarantine(settings, quarantine)
    return tables


def _write_table(settings: Settings, name: str, frame: pd.DataFrame) -> None:
    path = settings.lake_path / f"{name}.parquet"
    tmp = path.with_name(f".{name}.parquet.tmp")
    frame.to_parquet(tmp, index=False)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_table(settings: Settings, name: str) -> pd.DataFrame | None:
    path = settings.lake_path / f"{name}.parquet"
    return pd.read_parquet(path) if path.exists() else None


def _write_quarantine(settings: Settings, quarantine: pd.DataFrame) -> None:
    lines = [json.dumps(row) for row in quarantine.to_dict("records")] if len(quarantine) else []
    atomic_write_bytes(
        settings.data_path / "quarantine.jsonl",
        ("\n".join(lines) + ("\n" if lines else "")).encode(),
    )


def load_lake(settings: Settings) -> LakeTables:
    """The materialized tables; `DataNotFoundError` before the first ingest."""
    frames = {}
    for name in TABLES:
        frame = _read_table(settings, name)
        if frame is None:
            raise DataNotFoundError(
                f"{settings.lake_path / (name + '.parquet')} does not exist: run `movierec ingest`"
            )
        frames[name] = frame
    return LakeTables(**frames)


def _totals(t: LakeTables) -> dict[str, int]:
    return {
        "users": int(t.interactions["user_id"].nunique()) if len(t.interactions) else 0,
        "movies": int(t.interactions["movie_id"].nunique()) if len(t.interactions) else 0,
        "interactions": len(t.interactions),
        "ratings": len(t.ratings),
        "watch_minutes": len(t.watches),
        "recommendations": len(t.recommendations),
    }


def _new_rows(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    if old is None or old.empty:
        return new
    merged = new.merge(old, how="left", indicator=True, on=list(new.columns))
    return merged[merged["_merge"] == "left_only"].drop(columns="_merge")


# ---- reports --------------------------------------------------------------------------------


def refresh_report(
    settings: Settings,
    result: IngestResult,
    reasons: dict[str, int],
    before: dict[str, Any],
    after: dict[str, Any],
) -> dict[str, Any]:
    """The report's core: totals, deltas, quarantine, positions. Checks add their own keys."""
    return {
        "created_at": datetime.now(UTC).isoformat(),
        "source": result.source,
        "lines_read": result.lines,
        "events_accepted": result.accepted,
        "quarantined": result.quarantined,
        "quarantine_by_reason": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "totals": result.totals,
        "deltas": result.deltas,
        "position_before": before,
        "position_after": after,
    }


def _reference_ratings(settings: Settings, fallback: pd.DataFrame | None) -> pd.DataFrame | None:
    """The data the newest model was trained on (its registered snapshot), else what the lake
    held before this run."""
    from movierec.provenance import read_data

    records = read_data(settings)
    if records:
        path = settings.path(records[-1].path)
        if path.exists():
            snap = pd.read_parquet(path)
            rated = snap.dropna(subset=["rating"])
            return rated.rename(columns={"last_ts": "timestamp"})[
                ["user_id", "movie_id", "rating", "timestamp"]
            ]
    return fallback


def _drift(settings: Settings, old: pd.DataFrame | None, new: pd.DataFrame) -> dict[str, Any]:
    from movierec.data.quality import drift_report

    reference = _reference_ratings(settings, old)
    if reference is None or reference.empty:
        return {"checked": False, "reason": "no reference data yet", "drifted": False}
    movies = _movies(settings)
    return drift_report(reference, new, movies)


def _movies(settings: Settings) -> pd.DataFrame | None:
    from movierec.data.movielens import load_tables

    try:
        return load_tables(settings, settings.dataset).movies
    except DataNotFoundError:
        return None


def _poisoning(
    settings: Settings, old: pd.DataFrame | None, new: pd.DataFrame, tables: LakeTables
) -> dict[str, Any]:
    from movierec.data.quality import poisoning_report

    history = old if old is not None else new.iloc[:0]
    known = set(history["user_id"].unique()) if len(history) else set()
    new_users = set(new["user_id"].unique()) - known
    report = poisoning_report(history, new, new_users)
    if report["flagged_events"]:
        flagged = pd.concat(
            [tables.flagged, pd.DataFrame(report["flagged_events"])], ignore_index=True
        ).drop_duplicates()
        _write_table(settings, "flagged", flagged)
        tables.flagged = flagged
    return {k: v for k, v in report.items() if k != "flagged_events"} | {
        "flagged_event_count": len(report["flagged_events"])
    }


# ---- the data a training run uses -----------------------------------------------------------


def training_interactions(settings: Settings, tables: LakeTables | None = None) -> pd.DataFrame:
    """Interactions to train on: flagged (suspected poisoning) events left out when
    `exclude_flagged_events` is set."""
    t = tables or load_lake(settings)
    inter = t.interactions
    if settings.exclude_flagged_events and len(t.flagged):
        key = pd.MultiIndex.from_frame(t.flagged[["user_id", "movie_id"]])
        mask = pd.MultiIndex.from_frame(inter[["user_id", "movie_id"]]).isin(key)
        inter = inter[~mask]
    return inter.reset_index(drop=True)


def snapshot_training_data(
    settings: Settings, interactions: pd.DataFrame, source: dict[str, Any] | None = None
) -> DataSnapshot:
    """Write the exact rows a training run uses as an immutable, content-addressed file
    `data/training/<data_id>.parquet` and register it in `models/data_provenance.csv`."""
    from movierec.provenance import DataRecord, append_data, find_data

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
                source=source or {"lake_positions": read_state(settings).get("positions", {})},
            ),
        )
    return DataSnapshot(data_id, path, digest, len(frame), int(frame["user_id"].nunique()))
