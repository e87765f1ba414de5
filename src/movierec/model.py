"""The serving model: what a request needs, and nothing of the trainer.

A bundle carries the lists the trainer precomputed for every user it knows
(`recommendations.parquet`: user_id, items as the comma-joined top-K) and a cold-start list
(`cold_start.json`). Loading verifies every file of the bundle against its recorded sha256;
answering is a dictionary lookup. numpy, pandas and pyarrow only: never xgboost or training
code, so the service starts fast and small.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from movierec.errors import ModelLoadError
from movierec.registry import verify_bundle

RECOMMENDATIONS = "recommendations.parquet"
COLD_START = "cold_start.json"


@dataclass
class ServingModel:
    version: str
    metadata: dict[str, Any]
    lists: dict[int, str] = field(repr=False)
    cold: str

    @classmethod
    def load(cls, bundle_dir: Path) -> ServingModel:
        """Verify the bundle's hashes, then read its precomputed lists."""
        meta = verify_bundle(bundle_dir)
        try:
            table = pq.read_table(bundle_dir / RECOMMENDATIONS, columns=["user_id", "items"])
            users = table.column("user_id").to_pylist()
            items = table.column("items").to_pylist()
            cold_items = json.loads((bundle_dir / COLD_START).read_text())["items"]
        except (OSError, KeyError, ValueError) as exc:
            raise ModelLoadError(f"{bundle_dir}: unreadable serving artifacts ({exc})") from None
        if not cold_items:
            raise ModelLoadError(f"{bundle_dir}: empty cold-start list")
        return cls(
            version=str(meta["version"]),
            metadata=meta,
            lists=dict(zip(users, items, strict=True)),
            cold=",".join(cold_items),
        )

    def recommend(self, user_id: int) -> str:
        """Comma-joined movie ids, best first; the cold-start list for an unknown user."""
        return self.lists.get(user_id, self.cold)

    def is_cold(self, user_id: int) -> bool:
        return user_id not in self.lists

    @property
    def known_users(self) -> int:
        return len(self.lists)
