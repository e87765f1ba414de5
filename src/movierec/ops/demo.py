"""`make demo`: the whole life cycle on ml-100k in a few minutes, with a readable timeline.

Replay 60% of the real data, ingest, train v1. The first release, v0, serves v1's rating model
with lists ranked by predicted rating alone - the naive first version a team ships before it
learns that ranking matters - so the demo has a candidate that is truly better online: v1
itself, with its learned ranker. Real gunicorn serves v0; simulated users send traffic. Then:

1. v1, the good candidate, runs in shadow (it computes lists for a sample of requests, never
   served), passes the shadow gate, and ramps as a canary from 10% to 100% while its CTR
   lift's always-valid interval stays above -margin: PROMOTE.
2. 20% more data arrives and the cron retrain promotes v2 (better holdout RMSE) to a shadow.
   The online evaluator decides what the evidence says. In this simulator a model retrained
   on more data is worse online than its predecessor (it no longer lists the movies users
   watched since, which simulated users would gladly watch again), so the honest outcome is
   an ABORT: shown worse than the margin, or inconclusive at a step past its time.
3. A deliberately bad v3 (the stable model's rating model, its list ranked by predicted rating
   alone: offline RMSE as good, lists poor) is aborted. Its lists agree with stable's in many
   places, so the shadow gate, which stops broken candidates only, lets it through; its first
   canary step, on 10% of users, stops it.

The demo's clock is compressed: a step may stay inconclusive for `DEMO_STEP_MINUTES` real
minutes, not a day. Ends with a summary and a report (Markdown + PNG) under `<home>/reports/`.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field

from movierec.core.settings import Settings
from movierec.core.vocabulary import Decision, Stage
from movierec.data.ingest import ingest
from movierec.data.movielens import fetch, load_tables
from movierec.data.replay import ReplayResult, replay
from movierec.ops.demo_report import write_report
from movierec.ops.service import running_service, wait_for_version
from movierec.ops.simulate import Traffic, World, simulate
from movierec.registry.routing import read_routing, set_shadow, set_stable
from movierec.release.evaluator import ReleaseResult, evaluate_release
from movierec.retrain.gate import lake_counts, write_state
from movierec.retrain.job import retrain
from movierec.retrain.training import register_rank_by_rating_variant, train_candidate

log = logging.getLogger(__name__)

DEMO_STEP_MINUTES = 2.0  # the compressed clock: an inconclusive step aborts after this long
DEMO_SHADOW_PCT = 50  # of requests computed by the shadow candidate in the demo


@dataclass
class Timeline:
    start: float = field(default_factory=time.perf_counter)
    rows: list[tuple[float, str]] = field(default_factory=list)

    def say(self, text: str) -> None:
        t = time.perf_counter() - self.start
        self.rows.append((t, text))
        print(f"[{t:7.1f}s] {text}", flush=True)


@dataclass
class Demo:
    settings: Settings
    url: str
    world: World
    tl: Timeline
    decisions: list[ReleaseResult] = field(default_factory=list)
    failures: int = 0


def demo_settings(settings: Settings) -> Settings:
    """The demo's compressed clock and its shadow sample."""
    return settings.replace(
        max_step_hours=min(settings.release.max_step_hours, DEMO_STEP_MINUTES / 60),
        shadow_sample_pct=DEMO_SHADOW_PCT,
    )


def run_demo(settings: Settings, *, fresh: bool = True) -> dict[str, object]:
    """The whole life cycle on ml-100k; returns the summary it prints."""
    settings = demo_settings(settings)
    tl = Timeline()
    # Data: real ml-100k, 60% of it replayed and ingested
    _prepare(settings, tl, fresh)
    # Models: v1 trained; the first release v0 ranks v1's lists by predicted rating alone
    v1, v0 = _first_models(settings, tl)
    tables = load_tables(settings, "ml-100k")
    world = World(tables.ratings, tables.users, seed=settings.training.seed)
    with running_service(settings) as url:
        demo = Demo(settings, url, world, tl)
        tl.say(f"service up on {url} (gunicorn, {settings.serving.workers} workers)")
        # Traffic: simulated users watch and rate
        _traffic(demo, 600)
        # v1, the good candidate: shadow, canary ramp, promotion
        _release_candidate(demo, v1, "v1 (v0's model with its learned ranker)")
        # v2: more data, the cron retrain, the online evaluator's verdict
        _retrain_and_release(demo)
        # v3: a deliberately bad candidate, stopped in shadow
        _bad_candidate(demo)
    tl.say("service stopped")
    # Summary and report
    routing = read_routing(settings)
    summary = {
        "versions": {"v0": v0, "v1": v1, "stable_now": routing.stable if routing else None},
        "decisions": [
            {
                "decision": str(d.decision),
                "stage": str(d.stage),
                "pct_before": d.pct_before,
                "pct_after": d.pct_after,
                "canary": d.candidate,
            }
            for d in demo.decisions
        ],
        "failed_requests": demo.failures,
    }
    tl.say(f"report: {write_report(settings, tl.rows, demo.decisions)}")
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


def _replay_part(settings: Settings, start: float, end: float) -> ReplayResult:
    events = str(settings.path(settings.data.event_source))
    return replay(settings, "ml-100k", events, start=start, end=end, seed=settings.training.seed)


def _first_models(settings: Settings, tl: Timeline) -> tuple[str, str]:
    v1 = train_candidate(settings, tune=True)
    write_state(settings, v1.version, "initial", lake_counts(settings))
    m1 = v1.metrics
    tl.say(f"trained v1 {v1.version}: RMSE {m1['rmse']:.4f}, NDCG@10 {m1['ndcg@10']:.4f}")
    v0 = register_rank_by_rating_variant(settings, v1.version)
    set_stable(settings, v0, "demo: the first release ranks by predicted rating alone")
    tl.say(f"first release v0 = {v0}: v1's rating model, lists ranked by predicted rating")
    return v1.version, v0


def _traffic(demo: Demo, requests: int) -> None:
    sim = simulate(demo.settings, Traffic(demo.url, requests, rate=150), world=demo.world)
    demo.failures += sim.failed
    demo.tl.say(
        f"simulated {sim.requests} requests: {sim.clicks_on_list} clicks, {sim.failed} failed"
    )


def _release_candidate(demo: Demo, version: str, label: str) -> None:
    set_shadow(demo.settings, version, demo.settings.release.shadow_sample_pct, f"demo: {label}")
    wait_for_version(demo.url, version)
    demo.tl.say(f"{label} = {version} runs in shadow")
    _release_rounds(demo)


def _retrain_and_release(demo: Demo) -> None:
    _replay_part(demo.settings, 0.6, 0.8)
    demo.tl.say("20% more real data arrived (replay 60% -> 80%)")
    rt = retrain(demo.settings)
    demo.tl.say(f"cron retrain: {rt.decision} ({rt.reason}); candidate {rt.candidate}")
    if not (rt.candidate and rt.decision == "promoted"):
        return
    wait_for_version(demo.url, rt.candidate)
    demo.tl.say(f"v2 {rt.candidate} runs in shadow in the running service (no restart)")
    _release_rounds(demo)


def _bad_candidate(demo: Demo) -> None:
    routing = read_routing(demo.settings)
    assert routing is not None
    v3 = register_rank_by_rating_variant(demo.settings, routing.stable)
    _release_candidate(demo, v3, "a bad v3 (stable's model, lists ranked by predicted rating)")


def _release_rounds(demo: Demo, max_rounds: int = 40) -> None:
    """Traffic, then an evaluation, until the candidate is promoted or aborted."""
    rel = demo.settings.release
    for _ in range(max_rounds):
        routing = read_routing(demo.settings)
        assert routing is not None
        if routing.stage is Stage.SHADOW:
            share = routing.shadow_pct
        else:
            share = max(1, min(routing.canary_pct, 100 - routing.canary_pct) or 100)
        needed = math.ceil(rel.min_samples_per_arm * 100 / share * 1.3)
        sim = simulate(demo.settings, Traffic(demo.url, needed, rate=250), world=demo.world)
        demo.failures += sim.failed
        result = evaluate_release(demo.settings)
        demo.decisions.append(result)
        demo.tl.say(f"{sim.requests} requests -> {_describe(result)}")
        if result.decision in (Decision.PROMOTE, Decision.ABORT):
            return


def _describe(result: ReleaseResult) -> str:
    where = (
        "shadow"
        if result.stage is Stage.SHADOW
        else f"canary {result.pct_before}% -> {result.pct_after}%"
    )
    return f"{result.decision} ({where}): {result.reasons[0]}"
