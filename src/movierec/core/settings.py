"""One frozen `Settings`, built from MOVIEREC_* environment variables and validated once.

Settings come in sections, one per stage of the life cycle (`paths`, `data`, `training`,
`retraining`, `serving`, `release`). A field is read from MOVIEREC_<FIELD NAME IN CAPITALS>,
whatever its section: `settings.serving.port` comes from MOVIEREC_PORT. Field names are unique
across sections, so `Settings.from_env(port=9000)` and `settings.replace(seed=1)` take flat
names. Test-only hooks are not settings: fault injection has its own switch (`core.faults`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import get_type_hints

from movierec.core.errors import ConfigError
from movierec.core.sections import (
    SECTIONS,
    DataSettings,
    PathSettings,
    ReleaseSettings,
    RetrainSettings,
    ServingSettings,
    TrainingSettings,
)
from movierec.core.sections import comma_list as comma_list  # re-exported: the one parser
from movierec.core.validation import DATASETS as DATASETS  # re-exported: callers import it here
from movierec.core.validation import ENV_PREFIX as ENV_PREFIX
from movierec.core.validation import validate


def _section_of() -> dict[str, str]:
    """Field name -> its section (names are unique across sections)."""
    out: dict[str, str] = {}
    for section, cls in SECTIONS.items():
        for f in fields(cls):
            if f.name in out:  # pragma: no cover - a programming error, caught by the tests
                raise ConfigError(f"setting {f.name} is in two sections")
            out[f.name] = section
    return out


_SECTION_OF = _section_of()


@dataclass(frozen=True)
class Settings:
    """Every knob of the system, grouped by stage. Build it with `Settings.from_env()`."""

    paths: PathSettings = field(default_factory=PathSettings)
    data: DataSettings = field(default_factory=DataSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    retraining: RetrainSettings = field(default_factory=RetrainSettings)
    serving: ServingSettings = field(default_factory=ServingSettings)
    release: ReleaseSettings = field(default_factory=ReleaseSettings)
    # where each field's value came from: "environment" or "override" (absent: default)
    origin: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        _normalize_paths(self.paths)
        validate({name: value for name, _section, value in self.items()})

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from MOVIEREC_* variables; explicit overrides (flat field names) win."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        origin: dict[str, str] = {}
        for name, section in _SECTION_OF.items():
            key = ENV_PREFIX + name.upper()
            if key in env:
                values[name] = _coerce(name, env[key], _field_type(section, name))
                origin[name] = "environment"
        for name in overrides:
            if name not in _SECTION_OF:
                raise ConfigError(f"unknown setting {name!r}")
            origin[name] = "override"
        values.update(overrides)
        return _build(values, origin)

    def replace(self, **changes: object) -> Settings:
        """A copy with some fields (flat names) changed, validated again."""
        values = {name: value for name, _section, value in self.items()}
        for name in changes:
            if name not in _SECTION_OF:
                raise ConfigError(f"unknown setting {name!r}")
        values.update(changes)
        origin = dict(self.origin) | {name: "override" for name in changes}
        return _build(values, origin)

    def items(self) -> Iterator[tuple[str, str, object]]:
        """(field name, section, value) of every setting, section by section."""
        for section in SECTIONS:
            part = getattr(self, section)
            for f in fields(part):
                yield f.name, section, getattr(part, f.name)

    def env(self) -> dict[str, str]:
        """The MOVIEREC_* variables that give a child process these settings."""
        return {ENV_PREFIX + name.upper(): str(value) for name, _section, value in self.items()}

    # ---- derived paths ------------------------------------------------------------------
    @property
    def home(self) -> Path:
        return self.paths.home

    def path(self, p: Path | str) -> Path:
        """Resolve a path relative to `home`."""
        p = Path(p)
        return p if p.is_absolute() else self.home / p

    @property
    def data_path(self) -> Path:
        return self.path(self.paths.data_dir)

    @property
    def models_path(self) -> Path:
        return self.path(self.paths.models_dir)

    @property
    def logs_path(self) -> Path:
        return self.path(self.paths.logs_dir)

    @property
    def cache_path(self) -> Path:
        return self.path(self.paths.cache_dir)

    @property
    def lake_path(self) -> Path:
        """Parquet tables materialized by the DataPipeline."""
        return self.data_path / "lake"

    @property
    def datasets_path(self) -> Path:
        """Canonical MovieLens tables, one folder per dataset."""
        return self.data_path / "movielens"

    @property
    def holdout_file(self) -> Path:
        return self.data_path / "offline_eval_data.parquet"

    @property
    def routing_file(self) -> Path:
        return self.models_path / "routing.json"

    @property
    def routing_history_file(self) -> Path:
        return self.models_path / "routing_history.jsonl"

    @property
    def retrain_state_file(self) -> Path:
        return self.data_path / "retrain_state.json"

    @property
    def served_log_file(self) -> Path:
        return self.logs_path / "served.jsonl"

    @property
    def spill_path(self) -> Path:
        """Where served-log records wait when logs/ cannot take them."""
        return self.path(self.paths.spill_dir)

    @property
    def shadow_log_file(self) -> Path:
        """The shadow candidate's lists (daily files `shadow-YYYY-MM-DD.jsonl` beside it)."""
        return self.logs_path / "shadow.jsonl"

    @property
    def online_metrics_file(self) -> Path:
        """What the online evaluator measured last (read by the service's /metrics)."""
        return self.logs_path / "online_metrics.json"

    @property
    def feedback_events_file(self) -> Path:
        """Every release decision with its metrics."""
        return self.logs_path / "feedback_events.json"

    @property
    def online_store_file(self) -> Path:
        """The online store's SQLite database (`online_store=sqlite`)."""
        return self.data_path / "online_store.sqlite"

    @property
    def reports_path(self) -> Path:
        return self.path("reports")

    @property
    def kafka_topic(self) -> str | None:
        """The topic when the event source is kafka:TOPIC, otherwise None."""
        source = self.data.event_source
        return source[6:] if source.startswith("kafka:") else None


# ---- building and validation ----------------------------------------------------------------


def _field_type(section: str, name: str) -> object:
    return get_type_hints(SECTIONS[section])[name]


def _build(values: Mapping[str, object], origin: Mapping[str, str]) -> Settings:
    parts: dict[str, dict[str, object]] = {section: {} for section in SECTIONS}
    for name, value in values.items():
        parts[_SECTION_OF[name]][name] = value
    try:
        built = {section: SECTIONS[section](**kw) for section, kw in parts.items()}
    except TypeError as exc:
        raise ConfigError(f"bad settings: {exc}") from None
    return Settings(**built, origin=dict(origin))


def _normalize_paths(paths: PathSettings) -> None:
    object.__setattr__(paths, "home", Path(paths.home).resolve())
    for name in ("data_dir", "models_dir", "logs_dir", "cache_dir", "spill_dir"):
        object.__setattr__(paths, name, Path(getattr(paths, name)))


def _coerce(name: str, raw: str, typ: object) -> object:
    """Turn an environment string into the field's type, or say which variable is wrong."""
    key = ENV_PREFIX + name.upper()
    try:
        if typ is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if typ is int:
            return int(raw)
        if typ is float:
            return float(raw)
        if typ is Path:
            return Path(raw)
        return raw
    except ValueError:
        raise ConfigError(f"{key}={raw!r}: expected {getattr(typ, '__name__', typ)}") from None
