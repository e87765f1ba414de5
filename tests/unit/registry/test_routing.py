"""Bundles (atomic, hashed, verified) and routing (atomic, history, sticky buckets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from movierec.core.errors import DataValidationError, ModelLoadError
from movierec.core.settings import Settings
from movierec.registry.bundles import save_bundle
from movierec.registry.routing import (
    Routing,
    abort_canary,
    arm_for,
    canary_bucket,
    promote_canary,
    read_routing,
    routed_versions,
    routing_signature,
    set_canary,
    set_canary_pct,
    set_shadow,
    set_stable,
    shadow_to_canary,
)


def _bundle(settings: Settings, version: str) -> Path:
    return save_bundle(settings, version, {"a.bin": b"abc", "b.json": b"{}"}, {"metrics": {}})


def test_routing_changes_are_atomic_and_recorded(settings: Settings) -> None:
    for v in ("v1", "v2"):
        _bundle(settings, v)
    assert read_routing(settings) is None
    set_stable(settings, "v1", "first")
    sig = routing_signature(settings)
    set_canary(settings, "v2", 10, "canary")
    assert routing_signature(settings) != sig
    r = read_routing(settings)
    assert r is not None and (r.stable, r.canary, r.canary_pct) == ("v1", "v2", 10)
    promote_canary(settings, "healthy")
    r = read_routing(settings)
    assert r is not None and (r.stable, r.canary, r.canary_pct) == ("v2", None, 0)
    set_canary(settings, "v1", 30, "try again")
    abort_canary(settings, "bad")
    r = read_routing(settings)
    assert r is not None and (r.stable, r.canary) == ("v2", None)
    history = [json.loads(x) for x in settings.routing_history_file.read_text().splitlines()]
    assert [h["reason"] for h in history] == ["first", "canary", "healthy", "try again", "bad"]
    assert history[2]["before"]["canary"] == "v2" and history[2]["after"]["stable"] == "v2"
    with pytest.raises(ModelLoadError, match="no such model"):
        set_canary(settings, "v404", 10, "x")
    assert not list(settings.models_path.glob(".routing.json*.tmp"))


def test_invalid_routing_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(DataValidationError, match="canary_pct"):
        Routing("v1", "v2", 140, "", "")
    settings.models_path.mkdir(parents=True)
    settings.routing_file.write_text("{broken")
    with pytest.raises(DataValidationError, match="not valid JSON"):
        read_routing(settings)


def test_buckets_are_stable_and_raising_the_percentage_only_adds_users() -> None:
    assert canary_bucket(42, "salt") == canary_bucket(42, "salt")
    buckets = [canary_bucket(u, "salt") for u in range(10_000)]
    assert all(0 <= b < 100 for b in buckets)
    assert 0.08 < sum(b < 10 for b in buckets) / 10_000 < 0.12  # roughly uniform
    previous: set[int] = set()
    for pct in range(0, 101, 10):
        routing = Routing("v1", "v2" if pct else None, pct, "", "")
        canary = {u for u in range(10_000) if arm_for(u, routing, "salt") == "canary"}
        assert previous <= canary
        previous = canary
    assert len(previous) == 10_000


def test_a_candidate_goes_shadow_then_canary_and_routing_without_shadow_fields_still_reads(
    settings: Settings,
) -> None:
    for v in ("v1", "v2"):
        _bundle(settings, v)
    set_stable(settings, "v1", "first")
    old = json.loads(settings.routing_file.read_text())
    assert read_routing(settings) == Routing("v1", None, 0, old["updated_at"], "first")
    shadow = set_shadow(settings, "v2", 20, "retrain")
    assert (shadow.stage, shadow.candidate, shadow.shadow_pct) == ("shadow", "v2", 20)
    assert shadow.stage_started_at == shadow.updated_at
    assert read_routing(settings) == shadow
    canary = shadow_to_canary(settings, 10, "shadow passed")
    assert (canary.stage, canary.canary, canary.canary_pct, canary.shadow) == (
        "canary",
        "v2",
        10,
        None,
    )
    step = set_canary_pct(settings, 20, "ramp")
    assert step.stage_started_at == canary.stage_started_at != step.updated_at
    set_shadow(settings, "v2", 20, "again")
    assert abort_canary(settings, "bad").stage == "stable"
    assert "v2" in routed_versions(settings)
    with pytest.raises(DataValidationError, match="shadow v1 is also served"):
        Routing("v1", None, 0, "", "", shadow="v1", shadow_pct=10)
    with pytest.raises(DataValidationError, match="shadow_pct"):
        Routing("v1", None, 0, "", "", shadow="v2", shadow_pct=101)
