"""The baseline of the serving benchmark: a Flask endpoint that returns a fixed string."""

from __future__ import annotations

from flask import Flask

FIXED = ",".join(f"movie+{j}+2000" for j in range(20))

app = Flask(__name__)


@app.get("/recommend/<user_id>")
def recommend(user_id: str) -> tuple[str, int]:
    return FIXED, 200


@app.get("/readyz")
def readyz() -> tuple[dict[str, bool], int]:
    return {"ready": True}, 200
