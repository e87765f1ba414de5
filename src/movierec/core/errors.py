"""The few named exceptions of movierec. Each message says what was wrong and with which value."""

from __future__ import annotations


class MovierecError(Exception):
    """Base class: every error the project raises on purpose."""


class ConfigError(MovierecError):
    """A setting has a value that cannot work (for example a canary percentage of 140)."""


class DataValidationError(MovierecError):
    """Input data (an event line, a table, a file) does not satisfy its contract."""


class DataNotFoundError(MovierecError):
    """Data that a step needs has not been fetched, ingested or created yet."""


class HoldoutChangedError(DataValidationError):
    """The fixed holdout file no longer has the sha256 recorded when it was created."""


class ModelLoadError(MovierecError):
    """A model bundle is missing, incomplete, or its files do not match their recorded hashes."""


class TrainingError(MovierecError):
    """Training could not finish (a Dask worker or the scheduler was lost mid-job): nothing
    was registered and nothing routed."""


class LockBusy(MovierecError):
    """Another process holds the lock of a job that must not run twice at once."""


class TraceError(MovierecError):
    """A link of the provenance chain (prediction -> model -> commit -> data) is missing."""


class OnlineStoreUnavailable(MovierecError):
    """The online store cannot answer right now: `reason` is missing, locked, unreachable or
    error. The service falls back to the precomputed list."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"online store {reason}: {detail}")
        self.reason = reason
