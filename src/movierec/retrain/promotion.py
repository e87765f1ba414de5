"""Whether a candidate replaces the deployed model, and routing it for its online release.

A candidate is promoted only on a real RMSE gain on the fixed holdout (by more than
`promote_rmse_margin`) that does not cost ranking quality (NDCG@10 not worse by more than
`promote_ndcg_tolerance`). The first model ever becomes stable; a later one starts in shadow
on `shadow_sample_pct`% of requests (the online evaluator moves it to a canary when the
shadow result allows), or, with `shadow_sample_pct=0`, directly as a canary at
`initial_canary_pct`.
"""

from __future__ import annotations

from movierec.core.settings import Settings
from movierec.data.holdout import holdout_sha256
from movierec.offline.metric_functions import headline
from movierec.registry.bundles import load_metadata
from movierec.registry.routing import Routing, read_routing, set_canary, set_shadow, set_stable
from movierec.retrain.training import evaluate_version


def decide_promotion(
    settings: Settings, candidate: dict[str, float], stable: dict[str, float] | None
) -> tuple[bool, str]:
    """Promote only on a real RMSE gain that does not cost ranking quality."""
    if stable is None:
        return True, "no stable model is deployed: the first model becomes stable"
    margin = settings.retraining.promote_rmse_margin
    tolerance = settings.retraining.promote_ndcg_tolerance
    c_rmse, s_rmse = candidate["rmse"], stable["rmse"]
    if not c_rmse < s_rmse - margin:
        return False, (
            f"RMSE {c_rmse:.6f} does not beat stable's {s_rmse:.6f} by more than {margin:g}"
        )
    c_ndcg, s_ndcg = candidate.get("ndcg@10"), stable.get("ndcg@10")
    if c_ndcg is not None and s_ndcg is not None and c_ndcg < s_ndcg - tolerance:
        return False, (
            f"RMSE improves ({c_rmse:.6f} < {s_rmse:.6f}) but NDCG@10 {c_ndcg:.4f} is worse "
            f"than stable's {s_ndcg:.4f} by more than {tolerance:g}"
        )
    return True, f"RMSE {c_rmse:.6f} < stable's {s_rmse:.6f}; NDCG@10 {c_ndcg} vs {s_ndcg}"


def stable_metrics(settings: Settings) -> tuple[str | None, dict[str, float] | None]:
    """The deployed stable model's holdout metrics, re-evaluated when its recorded ones were
    measured on another holdout (hash mismatch)."""
    routing = read_routing(settings)
    if routing is None:
        return None, None
    meta = load_metadata(settings, routing.stable)
    if meta.get("holdout_sha256") == holdout_sha256(settings) and meta.get("metrics"):
        return routing.stable, headline(meta["metrics"])
    return routing.stable, headline(evaluate_version(settings, routing.stable))


def route_candidate(settings: Settings, candidate: str, stable: str | None, reason: str) -> Routing:
    """The first model becomes stable; a later one a shadow (or, without a shadow stage, a
    canary at `initial_canary_pct`)."""
    if stable is None:
        return set_stable(settings, candidate, f"retrain: first model ({reason})")
    if settings.release.shadow_sample_pct > 0:
        return set_shadow(
            settings, candidate, settings.release.shadow_sample_pct, f"retrain: {reason}"
        )
    pct = settings.release.initial_canary_pct
    return set_canary(settings, candidate, pct, f"retrain: {reason}")
