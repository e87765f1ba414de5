"""Routing a promoted candidate: shadow first, or straight to a canary without a shadow stage."""

from __future__ import annotations

from movierec.core.settings import Settings
from movierec.registry.routing import set_stable
from movierec.retrain.promotion import decide_promotion, route_candidate
from tests.servicekit import make_bundle


def test_a_promoted_candidate_starts_in_shadow(settings: Settings) -> None:
    for v in ("v1", "v2", "v3"):
        make_bundle(settings, v, v)
    assert route_candidate(settings, "v1", None, "first").stage == "stable"
    shadow = route_candidate(settings, "v2", "v1", "better")
    assert (shadow.stage, shadow.shadow, shadow.shadow_pct, shadow.canary) == (
        "shadow",
        "v2",
        settings.release.shadow_sample_pct,
        None,
    )
    no_shadow = settings.replace(shadow_sample_pct=0)
    set_stable(no_shadow, "v1", "reset")
    canary = route_candidate(no_shadow, "v3", "v1", "better")
    assert (canary.stage, canary.canary, canary.canary_pct) == ("canary", "v3", 10)


def test_the_first_model_is_said_to_become_stable(settings: Settings) -> None:
    promote, reason = decide_promotion(settings, {"rmse": 0.9}, None)
    assert promote
    assert "becomes stable" in reason and "canary" not in reason
