"""`make demo`: the whole life cycle on ml-100k in a few minutes, with a readable timeline.

Replay 60% of the real data, ingest, train v1 and serve it with real gunicorn; simulated users
send traffic; 20% more data arrives and the cron retrain promotes v2 to a 10% canary; the
online evaluator ramps it to 100% and promotes it; then a deliberately bad v3 - v2's own
rating model, whose offline RMSE is as good as v2's, but whose list ranks unseen movies by
predicted rating alone, the very case a canary exists to catch - is released as a canary and
aborted. Ends with a summary and a report (Markdown + PNG plots) under `<home>/reports/`.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from movierec.core.settings import Settings
from movierec.data.ingest import ingest
from movierec.data.movielens import fetch, load_tables
from movierec.data.replay import replay
from movierec.ops.service import running_service, wait_for_version
from movierec.ops.simulate import World, simulate
from movierec.registry.routing import read_routing, set_canary, set_stable
from movierec.release.evaluator import evaluate_release
from movierec.release.policy import Decision
from movierec.retrain.gate import lake_counts, write_state
from movierec.retrain.job import retrain
from movierec.retrain.training import register_rank_by_rating_variant, train_candidate

log = logging.getLogger(__name__)


@dataclass
class Timeline:
    start: float = field(default_factory=time.perf_counter)
    rows: list[tuple[float, str]] = field(default_factory=list)

    def say(self, text: str) -> None:
        t = time.perf_counter() - self.start
        self.rows.append((t, text))
        print(f"[{t:7.1f}s] {text}", flush=True)


def run_demo(settings: Settings, *, fresh: bool = True) -> dict[str, Any]:
    """The whole life cycle on ml-100k; returns the summary it prints."""
    tl = Timeline()
    # Data: real ml-100k, 60% of it replayed and ingested
    _prepare(settings, tl, fresh)
    # v1: trained, routed as stable
    v1 = _first_model(settings, tl)
    tables = load_tables(settings, "ml-100k")
    world = World(tables.ratings, tables.users, seed=settings.training.seed)
    decisions: list[dict[str, Any]] = []
    failures = 0
    with running_service(settings) as url:
        tl.say(f"service up on {url} (gunicorn, {settings.serving.workers} workers)")
        # Traffic: simulated users watch and rate
        sim = simulate(settings, base_url=url, requests_total=600, rate=150, world=world)
        failures += sim.failed
        tl.say(
            f"simulated {sim.requests} requests: {sim.clicks_on_list} clicks, {sim.failed} failed"
        )
        # v2: more data, the cron retrain, a canary ramped by the online evaluator
        failures += _retrain_and_release(settings, url, world, tl, decisions)
        # v3: a deliberately bad canary, which the evaluator must abort
        failures += _bad_canary(settings, url, world, tl, decisions)
    tl.say("service stopped")
    # Summary and report
    routing = read_routing(settings)
    summary = {
        "versions": {"v1": v1, "stable_now": routing.stable if routing else None},
        "decisions": [
            {k: d[k] for k in ("decision", "pct_before", "pct_after", "canary")} for d in decisions
        ],
        "failed_requests": failures,
    }
    tl.say(f"report: {write_report(settings, tl, decisions)}")
    print(json.dumps(summary, indent=2))
    return summary


def _prepare(settings: Settings, tl: Timeline, fresh: bool) -> None:
    if fresh:
        for sub in ("data", "models", "logs", "reports"):
            shutil.rmtree(settings.path(sub), ignore_errors=True)
    for p in (settings.data_path, settings.models_path, settings.logs_path):
        p.mkdir(parents=True, exist_ok=True)
    fetched = fetch(settings, "ml-100k")
    tl.say(f"MovieLens ml-100k ready ({fetched.counts['ratings']:,} ratings, sha256 recorded)")
    r = _replay_part(settings, 0.0, 0.6)
    tl.say(f"replayed the first 60% of the ratings: {r.ratings:,} ratings, {r.lines:,} event lines")
    ing = ingest(settings)
    tl.say(f"DataPipeline ingested {ing.lines:,} lines ({ing.quarantined} quarantined)")


def _replay_part(settings: Settings, start: float, end: float) -> Any:
    events = str(settings.path(settings.data.event_source))
    return replay(settings, "ml-100k", events, start=start, end=end, seed=settings.training.seed)


def _first_model(settings: Settings, tl: Timeline) -> str:
    v1 = train_candidate(settings, tune=True)
    set_stable(settings, v1.version, "demo: first model")
    write_state(settings, v1.version, "initial", lake_counts(settings))
    m1 = v1.metrics
    tl.say(f"trained v1 {v1.version}: RMSE {m1['rmse']:.4f}, NDCG@10 {m1['ndcg@10']:.4f}")
    return v1.version


def _retrain_and_release(
    settings: Settings, url: str, world: World, tl: Timeline, decisions: list[dict[str, Any]]
) -> int:
    _replay_part(settings, 0.6, 0.8)
    tl.say("20% more real data arrived (replay 60% -> 80%)")
    rt = retrain(settings)
    tl.say(f"cron retrain: {rt.decision} ({rt.reason}); candidate {rt.candidate}")
    if not (rt.candidate and rt.decision == "promoted"):
        return 0
    wait_for_version(url, rt.candidate)
    tl.say(f"the running service serves v2 {rt.candidate} to 10% (no restart)")
    return _release_rounds(settings, url, world, tl, decisions)


def _bad_canary(
    settings: Settings, url: str, world: World, tl: Timeline, decisions: list[dict[str, Any]]
) -> int:
    v3 = make_bad_candidate(settings)
    set_canary(settings, v3, settings.release.initial_canary_pct, "demo: deliberately bad v3")
    wait_for_version(url, v3)
    tl.say(f"registered a bad v3 = {v3} (ranks by predicted rating alone) as a canary")
    return _release_rounds(settings, url, world, tl, decisions)


def _short(obj: Any) -> str:
    s = obj.summary() if hasattr(obj, "summary") else obj
    return json.dumps(s, default=str)[:200]


def _release_rounds(
    settings: Settings,
    url: str,
    world: Any,
    tl: Timeline,
    decisions: list[dict[str, Any]],
    max_rounds: int = 14,
) -> int:
    """Traffic, then an evaluation, until the canary is promoted or aborted."""

    failures = 0
    for _ in range(max_rounds):
        routing = read_routing(settings)
        assert routing is not None
        pct = max(1, min(routing.canary_pct, 100 - routing.canary_pct) or routing.canary_pct)
        needed = math.ceil(settings.release.min_samples_per_arm * 100 / pct * 1.3)
        sim = simulate(settings, base_url=url, requests_total=needed, rate=250, world=world)
        failures += sim.failed
        result = evaluate_release(settings)
        decisions.append(result.summary())
        c, s = result.arms["canary"], result.arms["stable"]
        tl.say(
            f"{sim.requests} requests -> {result.decision}: canary CTR {_pct(c.ctr)} "
            f"vs stable {_pct(s.ctr)}, canary {result.pct_before}% -> {result.pct_after}%"
            + (f" ({'; '.join(result.reasons)})" if result.decision is not Decision.RAMP else "")
        )
        if result.decision in (Decision.PROMOTE, Decision.ABORT):
            break
    return failures


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def make_bad_candidate(settings: Settings) -> str:
    """A bundle with the stable model's files (same offline RMSE) whose lists rank unseen
    movies by predicted rating alone."""

    routing = read_routing(settings)
    assert routing is not None
    return register_rank_by_rating_variant(settings, routing.stable)


def write_report(settings: Settings, tl: Timeline, decisions: list[dict[str, Any]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = settings.path("reports")
    folder.mkdir(parents=True, exist_ok=True)
    xs = list(range(1, len(decisions) + 1))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for arm in ("stable", "canary"):
        axes[0].plot(xs, [_nan(d["arms"][arm]["ctr"]) for d in decisions], marker="o", label=arm)
    axes[0].set_title("CTR per arm at each decision")
    axes[0].set_xlabel("decision")
    axes[0].legend()
    axes[1].step(xs, [d["pct_after"] for d in decisions], where="post", marker="o")
    axes[1].set_title("canary percentage after each decision")
    axes[1].set_xlabel("decision")
    axes[1].set_ylim(-5, 105)
    fig.tight_layout()
    plot = folder / "demo_release.png"
    fig.savefig(plot, dpi=90)
    plt.close(fig)
    lines = [
        "# movierec demo",
        "",
        f"Run at {datetime.now(UTC).isoformat()}.",
        "",
        "## Timeline",
        "",
        *[f"- `{t:6.1f}s` {text}" for t, text in tl.rows],
        "",
        "## Decisions",
        "",
        "| # | decision | canary | before | after | canary CTR | stable CTR | p-value |",
        "|---|---|---|---|---|---|---|---|",
        *[
            f"| {i} | {d['decision']} | {d['canary']} | {d['pct_before']}% | {d['pct_after']}% "
            f"| {_pct(d['arms']['canary']['ctr'])} | {_pct(d['arms']['stable']['ctr'])} "
            f"| {_fmt(d['comparison']['p_value'])} |"
            for i, d in enumerate(decisions, 1)
        ],
        "",
        f"![release]({plot.name})",
        "",
    ]
    path = folder / "demo_report.md"
    path.write_text("\n".join(lines))
    return path


def _nan(v: float | None) -> float:
    return float("nan") if v is None else v


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3g}"
