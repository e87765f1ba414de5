"""Bundles (atomic, hashed, verified) and routing (atomic, history, sticky buckets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from movierec.core.errors import ModelLoadError
from movierec.core.settings import Settings
from movierec.registry.bundles import list_versions, new_version, save_bundle, verify_bundle


def _bundle(settings: Settings, version: str) -> Path:
    return save_bundle(settings, version, {"a.bin": b"abc", "b.json": b"{}"}, {"metrics": {}})


def test_a_saved_bundle_verifies_and_records_hashes(settings: Settings) -> None:
    path = _bundle(settings, "v20250101T000000Z-aaaaaaaa")
    meta = verify_bundle(path)
    assert meta["artifacts"]["a.bin"]["bytes"] == 3
    assert meta["version"] == "v20250101T000000Z-aaaaaaaa"
    assert "git_commit" in meta and "numpy" in meta["library_versions"]
    assert list_versions(settings) == ["v20250101T000000Z-aaaaaaaa"]
    with pytest.raises(ModelLoadError, match="already exists"):
        _bundle(settings, "v20250101T000000Z-aaaaaaaa")


@pytest.mark.parametrize("damage", ["flip", "remove", "extra", "metadata"])
def test_a_tampered_bundle_is_refused_naming_the_file(settings: Settings, damage: str) -> None:
    path = _bundle(settings, "v1")
    if damage == "flip":
        (path / "a.bin").write_bytes(b"abd")
        match = "a.bin has sha256"
    elif damage == "remove":
        (path / "b.json").unlink()
        match = "b.json is missing"
    elif damage == "extra":
        (path / "evil.py").write_text("x")
        match = "evil.py"
    else:
        (path / "metadata.json").write_text("{not json")
        match = "corrupt metadata"
    with pytest.raises(ModelLoadError, match=match):
        verify_bundle(path)


def test_partial_bundles_are_invisible(settings: Settings) -> None:
    (settings.models_path / ".tmp-v9-1234").mkdir(parents=True)
    assert list_versions(settings) == []


def test_versions_look_right() -> None:
    from datetime import UTC, datetime

    v = new_version(datetime(2025, 12, 2, 17, 33, 25, tzinfo=UTC), "d14d5332ffff")
    assert v == "v20251202T173325Z-d14d5332"
