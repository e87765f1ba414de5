"""The lake: Parquet tables materialized from the DataPipeline's committed parts.

The DataPipeline (`data.ingest`) writes each batch as immutable part files under
`data/lake/parts/` and lists the committed ones in `data/lake/_state.json`. `materialize`
rebuilds every table from the committed parts, with de-duplication: an identical event line
counts once, a watch minute (user, movie, minute) counts once in the minutes watched (the
`watches` table keeps a re-watch, which the online evaluator counts as a new viewing), and a
user's latest rating of a movie wins. Tables (`data/lake/`): `interactions` (user_id,
movie_id, minutes, rating, first_ts, last_ts), `ratings` (user_id, movie_id, rating,
timestamp), `users` (user_id, first_seen, last_seen, events), `watches` (ts, user_id,
movie_id, minute), `recommendations` (ts, user_id, status, items, latency_ms) and `flagged`
(events excluded from training as suspected poisoning). Rejected lines are gathered into
`data/quarantine.jsonl`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from movierec.core.errors import DataNotFoundError, DataValidationError
from movierec.core.files import atomic_write_bytes, atomic_write_json, fsync_dir, read_json
from movierec.core.settings import Settings
from movierec.data.positions import SourcePosition, position_from_json

TABLES = ("interactions", "ratings", "users", "watches", "recommendations", "flagged")
PART_KINDS = ("watches", "rates", "recommendations", "quarantine")


@dataclass
class LakeTables:
    interactions: pd.DataFrame
    ratings: pd.DataFrame
    users: pd.DataFrame
    watches: pd.DataFrame
    recommendations: pd.DataFrame
    flagged: pd.DataFrame


def state_file(settings: Settings) -> Path:
    """The DataPipeline's commit record: source positions and the committed parts."""
    return settings.lake_path / "_state.json"


def parts_dir(settings: Settings) -> Path:
    return settings.lake_path / "parts"


@dataclass
class PendingCounts:
    """What every pipeline committed since the last refresh report (the report's counts)."""

    lines: int = 0
    accepted: int = 0
    quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # quarantined lines by reason

    def minus(self, reported: PendingCounts) -> PendingCounts:
        """The counts committed after `reported` was read (the counters only grow)."""
        done = reported.reasons
        return PendingCounts(
            self.lines - reported.lines,
            self.accepted - reported.accepted,
            self.quarantined - reported.quarantined,
            {r: n - done.get(r, 0) for r, n in self.reasons.items() if n > done.get(r, 0)},
        )


@dataclass(frozen=True)
class Refreshed:
    """What the last refresh of the tables covered."""

    seq: int  # the state's `seq` when it began: parts below it were in the tables
    at: float  # when it was recorded (Unix time)
    positions: dict[str, SourcePosition]  # the sources' positions then


@dataclass
class LakeState:
    """`data/lake/_state.json`, the DataPipeline's commit record, replaced atomically under
    the lake's lock: a batch is committed once its parts are listed here."""

    seq: int = 0  # the sequence number of the next parts written
    parts: list[str] = field(default_factory=list)  # the committed part files, in order
    positions: dict[str, SourcePosition] = field(default_factory=dict)  # by source key
    pending: PendingCounts = field(default_factory=PendingCounts)
    totals: dict[str, int] = field(default_factory=dict)  # the tables' sizes at the last refresh
    last_report: str | None = None  # the last refresh report's path
    refreshed: Refreshed | None = None  # None before the first refresh

    @classmethod
    def load(cls, settings: Settings) -> LakeState:
        """The state, empty before the first commit; a corrupt file is a
        `DataValidationError` naming it (never replaced: it says what was committed)."""
        path = state_file(settings)
        try:
            raw = read_json(path, default={})
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataValidationError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_json(raw, str(path))

    def save(self, settings: Settings) -> None:
        atomic_write_json(state_file(settings), self.to_json())

    @classmethod
    def from_json(cls, raw: object, where: str) -> LakeState:
        if not isinstance(raw, dict):
            raise DataValidationError(f"{where}: expected an object, found {type(raw).__name__}")
        try:
            pending = dict(raw.get("pending") or {})
            refreshed = raw.get("refreshed")
            return cls(
                seq=int(raw.get("seq", 0)),
                parts=[str(p) for p in raw.get("parts", [])],
                positions=_positions(raw.get("positions"), f"{where}: positions"),
                pending=PendingCounts(
                    int(pending.get("lines", 0)),
                    int(pending.get("accepted", 0)),
                    int(pending.get("quarantined", 0)),
                    {str(r): int(n) for r, n in dict(pending.get("reasons") or {}).items()},
                ),
                totals={str(k): int(v) for k, v in dict(raw.get("totals") or {}).items()},
                last_report=raw.get("last_report"),
                refreshed=None
                if refreshed is None
                else Refreshed(
                    int(refreshed.get("seq", -1)),
                    float(refreshed.get("at", 0.0)),
                    _positions(refreshed.get("positions"), f"{where}: refreshed positions"),
                ),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise DataValidationError(f"{where}: not a lake state ({exc})") from None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "seq": self.seq,
            "parts": self.parts,
            "positions": _positions_json(self.positions),
            "pending": asdict(self.pending),
            "totals": self.totals,
            "last_report": self.last_report,
        }
        if self.refreshed is not None:
            r = self.refreshed
            out["refreshed"] = {"seq": r.seq, "at": r.at, "positions": _positions_json(r.positions)}
        return out


def _positions(raw: object, where: str) -> dict[str, SourcePosition]:
    if not isinstance(raw, dict | None):
        raise DataValidationError(f"{where}: expected an object, found {type(raw).__name__}")
    found = {str(k): position_from_json(v, f"{where}[{k}]") for k, v in (raw or {}).items()}
    return {k: p for k, p in found.items() if p is not None}


def _positions_json(positions: dict[str, SourcePosition]) -> dict[str, object]:
    return {k: p.to_json() for k, p in positions.items()}


def write_part(settings: Settings, name: str, frame: pd.DataFrame) -> None:
    """A part file, durable under its final name (the caller fsyncs the folder)."""
    folder = parts_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.tmp"
    frame.to_parquet(tmp, index=False)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, folder / name)


def compact_parts(settings: Settings, state: LakeState) -> list[str]:
    """Merge the committed parts into one per kind, the same rows in the same order (so every
    table materializes the same), and list them in `state` instead; returns the names they
    replace, to delete once the caller has committed the state. A crash before that commit
    leaves the new files unlisted, a crash after it the old ones: leftovers either way."""
    names = []
    for kind in PART_KINDS:
        name = f"{state.seq:08d}-{kind}.parquet"
        write_part(settings, name, _read_parts(settings, state, kind))
        names.append(name)
    fsync_dir(parts_dir(settings))
    old = state.parts
    state.parts = names
    state.seq += 1
    return old


def _read_parts(settings: Settings, state: LakeState, kind: str) -> pd.DataFrame:
    files = [parts_dir(settings) / n for n in state.parts if n.endswith(f"-{kind}.parquet")]
    frames = [read_parquet(f) for f in files]
    frames = [f for f in frames if len(f)]
    if not frames:
        return read_parquet(files[0]) if files else pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def materialize(settings: Settings, state: LakeState) -> LakeTables:
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
    flagged = read_table(settings, "flagged")
    if flagged is None:
        flagged = pd.DataFrame(
            {"user_id": pd.Series(dtype="int64"), "movie_id": pd.Series(dtype="str")}
        )
    tables = LakeTables(interactions, ratings, users, watches, recs, flagged)
    for name in TABLES:
        write_table(settings, name, getattr(tables, name))
    write_quarantine(settings, quarantine)
    return tables


def write_table(settings: Settings, name: str, frame: pd.DataFrame) -> None:
    path = settings.lake_path / f"{name}.parquet"
    tmp = path.with_name(f".{name}.parquet.tmp")
    frame.to_parquet(tmp, index=False)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_table(settings: Settings, name: str) -> pd.DataFrame | None:
    path = settings.lake_path / f"{name}.parquet"
    return read_parquet(path) if path.exists() else None


def read_parquet(path: Path) -> pd.DataFrame:
    """A lake file; one that is cut short or corrupt is an error naming it (never rewritten)."""
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise DataValidationError(
            f"{path}: unreadable Parquet ({str(exc).splitlines()[0][:160]}); restore or remove it"
        ) from None


def write_quarantine(settings: Settings, quarantine: pd.DataFrame) -> None:
    lines = [json.dumps(row) for row in quarantine.to_dict("records")] if len(quarantine) else []
    atomic_write_bytes(
        settings.data_path / "quarantine.jsonl",
        ("\n".join(lines) + ("\n" if lines else "")).encode(),
    )


def load_lake(settings: Settings) -> LakeTables:
    """The materialized tables; `DataNotFoundError` before the first ingest."""
    frames = {}
    for name in TABLES:
        frame = read_table(settings, name)
        if frame is None:
            raise DataNotFoundError(
                f"{settings.lake_path / (name + '.parquet')} does not exist: run `movierec ingest`"
            )
        frames[name] = frame
    return LakeTables(**frames)


def lake_totals(t: LakeTables) -> dict[str, int]:
    return {
        "users": int(t.interactions["user_id"].nunique()) if len(t.interactions) else 0,
        "movies": int(t.interactions["movie_id"].nunique()) if len(t.interactions) else 0,
        "interactions": len(t.interactions),
        "ratings": len(t.ratings),
        "watch_minutes": len(t.watches),
        "recommendations": len(t.recommendations),
    }


def training_interactions(settings: Settings, tables: LakeTables | None = None) -> pd.DataFrame:
    """Interactions to train on: flagged (suspected poisoning) events left out when
    `exclude_flagged_events` is set."""
    t = tables or load_lake(settings)
    inter = t.interactions
    if settings.data.exclude_flagged_events and len(t.flagged):
        key = pd.MultiIndex.from_frame(t.flagged[["user_id", "movie_id"]])
        mask = pd.MultiIndex.from_frame(inter[["user_id", "movie_id"]]).isin(key)
        inter = inter[~mask]
    return inter.reset_index(drop=True)
