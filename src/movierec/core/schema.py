"""Names shared by several stages, each defined once: table columns, age groups, the files of
a model bundle, and the files the system writes at run time."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# ---- tables (Parquet, see docs/contracts.md) ------------------------------------------------
RATING_COLUMNS = ("user_id", "movie_id", "rating", "timestamp")

# ---- age groups (MovieLens 1M's bands) ------------------------------------------------------
AGE_BINS = (0, 18, 25, 35, 45, 56)
AGE_LABELS = ("<18", "18-24", "25-34", "35-44", "45-55", "56+")
UNKNOWN_AGE_GROUP = -1


def age_group(age: npt.ArrayLike) -> np.ndarray:
    """The age group of each age as a code 0..5 (an index into AGE_LABELS); -1 when unknown."""
    a = np.asarray(age, dtype=float)
    codes = np.digitize(np.nan_to_num(a, nan=-1.0), AGE_BINS[1:])
    return np.where(np.isnan(a) | (a < 0), UNKNOWN_AGE_GROUP, codes).astype(np.int64)


def age_group_label(age: npt.ArrayLike) -> np.ndarray:
    """The age group of each age as its label ("25-34"); "unknown" when the age is not known."""
    codes = age_group(age)
    labels = np.array([*AGE_LABELS, "unknown"], dtype=object)
    return labels[np.where(codes < 0, len(AGE_LABELS), codes)]


# ---- a model bundle (models/<version>/) -----------------------------------------------------
METADATA = "metadata.json"
RECOMMENDATIONS = "recommendations.parquet"  # user_id, items: the precomputed top-K lists
COLD_START = "cold_start.json"  # {"items": [...]}: the list for users the model does not know
# the model's own files (`model.recommender`), besides its arrays (`model.arrays`)
MODEL_JSON = "model.json"  # params, feature names, cold start, the CF stage's scalars
RATING_MODEL = "rating_model"  # + .<case>.json: the stacked XGBoost rating booster per case
RANKER = "ranker.json"  # the LambdaMART booster (absent when the lists keep EASE's order)
VARIANT_JSON = "variant.json"  # present for the rank-by-rating variant

# ---- files written at run time --------------------------------------------------------------
MODEL_PROVENANCE = "model_provenance.csv"
DATA_PROVENANCE = "data_provenance.csv"
PREDICTION_EVENTS = "prediction_events.csv"
RELEASE_OVERRIDES = "release_overrides.csv"  # release decisions a person forced, who and why

# ---- the service ------------------------------------------------------------------------------
MAX_SERVED_USER_ID = 2**63 - 1  # /recommend/<user_id>: a non-negative integer up to this
