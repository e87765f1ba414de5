"""The refresh report of a DataPipeline run: totals, deltas, quarantine, source positions,
movies the catalog does not know (unknown titles), drift of the new ratings against the data
the newest model was trained on, and rating poisoning (events flagged so that training can
exclude them). Written to
`data/data_refresh_reports/<UTC>.json`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from movierec.core.errors import DataNotFoundError
from movierec.core.files import atomic_write_json
from movierec.core.provenance import read_data
from movierec.core.settings import Settings
from movierec.data.lake import LakeTables, PendingCounts, write_table
from movierec.data.movielens import load_tables
from movierec.data.positions import SourcePosition, position_to_json
from movierec.data.quality import DriftReport, drift_report, poisoning_report

UNKNOWN_EXAMPLES = 10  # unknown titles named in the report


def new_rows(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    if old is None or old.empty:
        return new
    merged = new.merge(old, how="left", indicator=True, on=list(new.columns))
    return merged[merged["_merge"] == "left_only"].drop(columns="_merge")


def refresh_report(
    source: str,
    pending: PendingCounts,
    totals: dict[str, int],
    deltas: dict[str, int],
    positions: tuple[SourcePosition | None, SourcePosition | None],
) -> dict[str, object]:
    """The report's core: what was committed since the last report (`pending`), the tables'
    totals and deltas, the source's positions before and after. Checks add their own keys."""
    return {
        "created_at": datetime.now(UTC).isoformat(),
        "source": source,
        "lines_read": pending.lines,
        "events_accepted": pending.accepted,
        "quarantined": pending.quarantined,
        "quarantine_by_reason": dict(sorted(pending.reasons.items(), key=lambda kv: -kv[1])),
        "totals": totals,
        "deltas": deltas,
        "position_before": position_to_json(positions[0]),
        "position_after": position_to_json(positions[1]),
    }


def _reference_ratings(settings: Settings, fallback: pd.DataFrame | None) -> pd.DataFrame | None:
    """The data the newest model was trained on (its registered snapshot), else what the lake
    held before this run."""
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


def drift_section(settings: Settings, old: pd.DataFrame | None, new: pd.DataFrame) -> DriftReport:
    reference = _reference_ratings(settings, old)
    if reference is None or reference.empty:
        return {"checked": False, "reason": "no reference data yet", "drifted": False}
    movies = _movies(settings)
    return drift_report(reference, new, movies)


def _movies(settings: Settings) -> pd.DataFrame | None:
    try:
        return load_tables(settings, settings.data.dataset).movies
    except DataNotFoundError:
        return None


def unknown_titles_section(settings: Settings, tables: LakeTables) -> dict[str, object]:
    """Movies the events name and the catalog does not (a title MovieLens lacks, a slug
    spelled another way): kept and trained on with unknown metadata, counted here."""
    movies = _movies(settings)
    if movies is None:
        return {"checked": False, "reason": "no catalog"}
    named = tables.interactions["movie_id"].astype(str)
    unknown = named[~named.isin(set(movies["movie_id"].astype(str)))]
    titles = sorted(unknown.unique())
    return {
        "checked": True,
        "titles": len(titles),
        "interactions": len(unknown),
        "examples": titles[:UNKNOWN_EXAMPLES],
    }


def poisoning_section(
    settings: Settings, old: pd.DataFrame | None, new: pd.DataFrame, tables: LakeTables
) -> dict[str, object]:
    history = old if old is not None else new.iloc[:0]
    known = set(history["user_id"].unique()) if len(history) else set()
    new_users = set(new["user_id"].unique()) - known
    report = poisoning_report(history, new, new_users)
    if report["flagged_events"]:
        flagged = pd.concat(
            [tables.flagged, pd.DataFrame(report["flagged_events"])], ignore_index=True
        ).drop_duplicates()
        write_table(settings, "flagged", flagged)
        tables.flagged = flagged
    return {k: v for k, v in report.items() if k != "flagged_events"} | {
        "flagged_event_count": len(report["flagged_events"])
    }


def write_report(settings: Settings, report: dict[str, object], seconds: float) -> Path:
    """Write the report under `data/data_refresh_reports/`, named by its UTC time."""
    report["duration_seconds"] = round(seconds, 3)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = settings.data_path / "data_refresh_reports" / f"{stamp}.json"
    atomic_write_json(path, report)
    return path
