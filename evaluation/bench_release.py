"""Decision accuracy of the release policies: how often each promotes a worse canary, aborts
an equal one, promotes a better one, and how many users and hours it takes to decide.

    .venv/bin/python evaluation/bench_release.py [--runs 200] [--seed 0]

Users. The simulator's user model (`ops.simulate`: `World` fitted on all of ml-100k,
`Behaviour`): each real user's chance to click the list a simple stable model would show
(the 20 most-rated movies they have not rated), by `click_probability`: the ground truth.
The site has `--copies` users per real user (the same tastes), each requesting at a rate
proportional to the real user's activity, `--rate` requests per hour in all, so that a 10%
canary can reach the sample a non-inferiority test needs (ml-100k's 943 users alone cannot:
see docs/automation.md).

Scenarios. A canary whose click probability is the stable's times 1.00 (A/A), 0.90 (10%
worse), 0.95 (5% worse) or 1.05 (5% better), for every user. Each run draws its own
assignment of users to arms (a bucket 0..99 per user), its own requests (Poisson, users by
activity) and clicks (Bernoulli), and replays the canary stage: 10% of users, then +10 points
per RAMP, PROMOTE at 100%, looked at every `--look-minutes` minutes. A click is credited at
once (the live evaluator waits for the 30-minute click window to pass: add that to each
decision's time). There is no shadow stage here (its evidence depends on the lists, not on a
CTR ratio) and no error, latency or fairness breach: the study measures the CTR rule.

Policies, each the project's own decision function on these numbers:
- design_70pct: the design's rule as the issue states it, abort only below 70% of the
  stable's CTR (`policy.decide_design` with no absolute floor and no minimum sample), on each
  step's requests, at every look;
- today: today's evaluator, the same function with its defaults: also CTR >= 10% absolute,
  and HOLD below `min_samples_per_arm` (200) mature requests per arm;
- naive_interval: the new rule's margin with a fixed 95% interval over requests, recomputed
  at every look (what the per-user, always-valid interval fixes);
- noninferiority_cs (new): `policy.decide_noninferiority` with the per-user delta-method lift
  and its always-valid confidence sequence (`release.stats`), default settings.

Prints a table per scenario and policy, then, last, one JSON line (`summary`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from movierec.core.online_metrics import ArmMetrics
from movierec.core.settings import ReleaseSettings, Settings
from movierec.data.movielens import fetch, load_tables
from movierec.ops.simulate import Behaviour, World, click_probability
from movierec.release.policy import (
    Decision,
    Evidence,
    decide_design,
    decide_noninferiority,
)
from movierec.release.stats import (
    Interval,
    RatioEstimate,
    confidence_sequences,
    planned_rho,
    ratio_estimate,
    ratio_from_sums,
    relative_lift,
    required_users,
    unit_variance,
)

SCENARIOS = {"aa": 1.00, "worse10": 0.90, "worse5": 0.95, "better5": 1.05}
NEW_POLICY = "noninferiority_cs"
STABLE, CANARY = 0, 1


# ---- the users ------------------------------------------------------------------------------


def user_model(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each ml-100k user's chance to click a stable list, and their share of the traffic."""
    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        s = Settings.from_env({}, home=Path(tmp), cache_dir=repo / ".cache", grouplens_url="")
        fetch(s, "ml-100k")
        tables = load_tables(s, "ml-100k")
    world = World(tables.ratings, tables.users, seed=seed)
    behaviour = Behaviour()
    popular = tables.ratings["movie_id"].value_counts().index.astype(str)
    rated = tables.ratings.groupby("user_id")["movie_id"].agg(set)
    p = np.empty(len(world.user_ids))
    for i, user in enumerate(world.user_ids):
        seen = rated.get(user, set())
        items = [m for m in popular[:400] if m not in seen][:20]
        p[i] = click_probability(items, int(user), world, behaviour)
    return p, world.activity


# ---- the traffic ----------------------------------------------------------------------------


@dataclass
class Runs:
    """`runs` independent canary stages of one scenario, simulated in lock step."""

    p_kind: np.ndarray  # per ml-100k user: chance to click a stable list
    weight: np.ndarray  # per ml-100k user: share of the traffic
    copies: int  # site users per ml-100k user (user k + i * kinds has kind k)
    runs: int
    lift: float
    rng: np.random.Generator
    per_look: float  # expected requests per look
    per_user: bool = True  # keep per-user sums (only the per-user policy needs them)
    pct: np.ndarray = field(init=False)
    bucket: np.ndarray = field(init=False)
    active: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.kinds = self.p_kind.size
        self.p_user = np.tile(self.p_kind, self.copies)
        n = self.p_user.size
        self.pct = np.full(self.runs, 10)
        self.bucket = self.rng.integers(0, 100, size=(self.runs, n), dtype=np.int8)
        self.active = np.ones(self.runs, dtype=bool)
        self.cum = np.cumsum(self.weight / self.weight.sum())
        # per user and arm, over the stage: requests, clicks (flat run * n + user)
        self.q = np.zeros((2, self.runs * n), dtype=np.int32)
        self.c = np.zeros((2, self.runs * n), dtype=np.int32)
        self.seen = np.zeros(self.runs * n, dtype=bool)
        self.users_seen = np.zeros(self.runs, dtype=np.int64)
        # per run and arm: users, sum q, sum c, sum q^2, sum c^2, sum q*c (stage)
        self.sums = np.zeros((2, 6, self.runs))
        # per run and arm, this step and this stage: requests, clicks
        self.step = np.zeros((2, 2, self.runs))
        self.stage = np.zeros((2, 2, self.runs))

    def look(self) -> None:
        """One look interval of traffic for every active run."""
        runs = np.flatnonzero(self.active)
        counts = self.rng.poisson(self.per_look, size=runs.size)
        run = np.repeat(runs, counts)
        kind = np.searchsorted(self.cum, self.rng.random(run.size), side="right")
        kind = np.minimum(kind, self.kinds - 1)
        user = kind + self.kinds * self.rng.integers(0, self.copies, size=run.size)
        canary = self.bucket[run, user] < self.pct[run]
        p = self.p_user[user] * np.where(canary, self.lift, 1.0)
        click = self.rng.random(run.size) < np.minimum(p, 1.0)
        flat = run * self.p_user.size + user
        fresh = _distinct(flat[~self.seen[flat]])
        self.seen[fresh] = True
        self.users_seen += np.bincount(fresh // self.p_user.size, minlength=self.runs)
        for arm, mask in ((STABLE, ~canary), (CANARY, canary)):
            self._add(arm, run[mask], flat[mask], click[mask])

    def _add(self, arm: int, run: np.ndarray, flat: np.ndarray, click: np.ndarray) -> None:
        for table in (self.step, self.stage):
            table[arm, 0] += np.bincount(run, minlength=self.runs)
            table[arm, 1] += np.bincount(run, weights=click, minlength=self.runs)
        if self.per_user:
            self._add_per_user(arm, flat, click)

    def _add_per_user(self, arm: int, flat: np.ndarray, click: np.ndarray) -> None:
        if not flat.size:
            return
        order = np.argsort(flat, kind="stable")
        flat, click = flat[order], click[order]
        first = np.r_[True, flat[1:] != flat[:-1]]
        cells = flat[first]
        inv = np.cumsum(first) - 1
        dq = np.bincount(inv)
        dc = np.bincount(inv, weights=click).astype(np.int64)
        q0, c0 = self.q[arm, cells].astype(np.int64), self.c[arm, cells].astype(np.int64)
        q1, c1 = q0 + dq, c0 + dc
        self.q[arm, cells], self.c[arm, cells] = q1, c1
        owner = cells // self.p_user.size
        deltas = ((q0 == 0) & (q1 > 0), dq, dc, q1**2 - q0**2, c1**2 - c0**2, q1 * c1 - q0 * c0)
        for k, d in enumerate(deltas):
            self.sums[arm, k] += np.bincount(owner, weights=d, minlength=self.runs)

    def estimate(self, arm: int, r: int) -> RatioEstimate:
        n, sq, sc, sq2, sc2, sqc = self.sums[arm, :, r]
        return ratio_from_sums(int(n), sq, sc, sq2, sc2, sqc)

    def new_step(self, r: int) -> None:
        self.step[:, :, r] = 0


def _distinct(values: np.ndarray) -> np.ndarray:
    v = np.sort(values)
    return v[np.r_[True, v[1:] != v[:-1]]] if v.size else v


# ---- the policies ---------------------------------------------------------------------------

Verdict = tuple[Decision, list[str]]
# decides, at one look, for the given active runs (their step hours and memos)
Policy = Callable[[Runs, np.ndarray, np.ndarray, list[dict[str, float]]], list[Verdict]]


def _design(min_samples: int, ctr_min_abs: float) -> Policy:
    settings = Settings.from_env(
        {}, home=tempfile.gettempdir(), min_samples_per_arm=min_samples, ctr_min_abs=ctr_min_abs
    )

    def one(runs: Runs, r: int, memo: dict[str, float]) -> Verdict:
        (qs, cs), (qc, cc) = runs.step[STABLE, :, r], runs.step[CANARY, :, r]
        canary = ArmMetrics(
            arm="canary", model_version="c", requests=int(qc), mature_requests=int(qc)
        )
        canary.ctr = cc / qc if qc else None
        if qs >= min_samples:  # at 100% the reference is what stable did before
            memo["stable_ctr"] = cs / qs
        stable_ctr = cs / qs if qs >= min_samples else memo.get("stable_ctr")
        return decide_design(settings, int(runs.pct[r]), canary, stable_ctr, int(qs))

    def decide(
        runs: Runs, active: np.ndarray, hours: np.ndarray, memos: list[dict[str, float]]
    ) -> list[Verdict]:
        return [one(runs, int(r), memos[r]) for r in active]

    return decide


def _noninferiority(rel: ReleaseSettings, per_user: bool) -> Policy:
    args = (rel.noninferiority_margin, rel.release_alpha, rel.release_power)
    rho = planned_rho(*args)

    def decide(
        runs: Runs, active: np.ndarray, hours: np.ndarray, memos: list[dict[str, float]]
    ) -> list[Verdict]:
        if per_user:  # as `stats.lift_interval`, with one boundary computation per look
            ests = [(runs.estimate(CANARY, int(r)), runs.estimate(STABLE, int(r))) for r in active]
            lifts = [relative_lift(c, s) or (math.nan, None) for c, s in ests]
            intervals = confidence_sequences(
                [v for v, _ in lifts], [var for _, var in lifts], rel.release_alpha, rho
            )
            users = [(c.units, s.units) for c, s in ests]
            required = [
                required_users(*args, unit_variance(s), u[0] / max(1, sum(u)))
                for (_, s), u in zip(ests, users, strict=True)
            ]
        else:
            intervals = [_per_request_interval(runs, int(r)) for r in active]
            users = [(10**9, 10**9)] * len(active)
            required = [(0, 0)] * len(active)
        out = []
        for i, r in enumerate(active):
            lift = intervals[i] if not math.isnan(intervals[i].value or 0.0) else Interval()
            ev = Evidence(
                pct=int(runs.pct[r]),
                lift=lift,
                users=users[i],
                required=required[i],
                step_requests=int(runs.step[CANARY, 0, r]),
                step_hours=float(hours[i]),
            )
            out.append(decide_noninferiority(ev, rel))
        return out

    return decide


def _per_request_interval(runs: Runs, r: int) -> Interval:
    """A fixed 95% Wald interval of the lift, every request an independent draw."""
    (qs, cs), (qc, cc) = runs.stage[STABLE, :, r], runs.stage[CANARY, :, r]
    if not qs or not qc:
        return Interval()
    ps, pc = cs / qs, cc / qc
    lift = relative_lift(
        RatioEstimate(int(qc), pc, pc * (1 - pc) / qc),
        RatioEstimate(int(qs), ps, ps * (1 - ps) / qs),
    )
    if lift is None:
        return Interval()
    half = 1.96 * math.sqrt(lift[1])
    return Interval(lift[0], lift[0] - half, lift[0] + half)


def policies(rel: ReleaseSettings) -> dict[str, Policy]:
    return {
        "design_70pct": _design(1, 0.0),
        "today": _design(rel.min_samples_per_arm, rel.ctr_min_abs),
        "naive_interval": _noninferiority(rel, per_user=False),
        NEW_POLICY: _noninferiority(rel, per_user=True),
    }


# ---- one scenario under one policy ----------------------------------------------------------


@dataclass
class Outcome:
    promoted: np.ndarray
    aborted: np.ndarray
    timed_out: np.ndarray  # aborted as inconclusive past the step's time limit
    users: np.ndarray
    hours: np.ndarray


def run_scenario(policy: Policy, rel: ReleaseSettings, runs: Runs, look_minutes: float) -> Outcome:
    n = runs.runs
    final = np.full(n, "", dtype=object)
    timed_out = np.zeros(n, dtype=bool)
    users = np.zeros(n, dtype=np.int64)
    hours = np.zeros(n)
    step_start = np.zeros(n)
    memo: list[dict[str, float]] = [{} for _ in range(n)]
    limit = (100 // rel.ramp_step_pct + 1) * rel.max_step_hours + 1
    t = 0.0
    while runs.active.any() and t < limit:
        runs.look()
        t += look_minutes / 60
        active = np.flatnonzero(runs.active)
        verdicts = policy(runs, active, t - step_start[active], memo)
        for r, (decision, reasons) in zip(active, verdicts, strict=True):
            if decision is Decision.RAMP:
                runs.pct[r] = min(100, runs.pct[r] + rel.ramp_step_pct)
                runs.new_step(int(r))
                step_start[r] = t
            elif decision in (Decision.PROMOTE, Decision.ABORT):
                final[r], users[r], hours[r] = str(decision), runs.users_seen[r], t
                timed_out[r] = reasons[0].startswith("inconclusive after")
                runs.active[r] = False
    return Outcome(final == "PROMOTE", final == "ABORT", timed_out, users, hours)


def self_check(rng: np.random.Generator) -> None:
    """The simulation's running sums give the same estimate as the per-user arrays."""
    q = rng.integers(1, 9, size=500)
    c = rng.binomial(q, 0.3)
    direct = ratio_estimate(c, q)
    sums = ratio_from_sums(q.size, q.sum(), c.sum(), (q * q).sum(), (c * c).sum(), (q * c).sum())
    assert direct.variance is not None and sums.variance is not None
    assert math.isclose(direct.variance, sums.variance, rel_tol=1e-9), (direct, sums)


# ---- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--copies", type=int, default=50, help="site users per ml-100k user")
    parser.add_argument("--rate", type=float, default=20_000.0, help="requests per hour")
    parser.add_argument("--look-minutes", type=float, default=10.0)
    args = parser.parse_args()
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    self_check(rng)
    p_kind, weight = user_model(args.seed)
    p_user = np.tile(p_kind, args.copies)
    weight_user = np.tile(weight, args.copies)
    rel = Settings.from_env({}).release
    print(
        f"users: {p_user.size:,} ({args.copies} per ml-100k user), stable CTR "
        f"{np.average(p_user, weights=weight_user):.3f}, {args.rate:,.0f} requests/h, a look every "
        f"{args.look_minutes:g} min, {args.runs} runs per scenario; margin "
        f"{rel.noninferiority_margin:.0%}, alpha {rel.release_alpha}, step limit "
        f"{rel.max_step_hours:g} h"
    )
    table: dict[str, dict[str, Outcome]] = {}
    for name, policy in policies(rel).items():
        table[name] = {}
        for scenario, lift in SCENARIOS.items():
            rng_run = np.random.default_rng([args.seed, hash_name(scenario)])
            per_look = args.rate * args.look_minutes / 60
            runs = Runs(p_kind, weight, args.copies, args.runs, lift, rng_run, per_look,
                        per_user=name == NEW_POLICY)  # fmt: skip
            table[name][scenario] = run_scenario(policy, rel, runs, args.look_minutes)
            out = table[name][scenario]
            print(
                f"{name:18s} {scenario:8s} promote {out.promoted.mean():6.1%}  abort "
                f"{out.aborted.mean():6.1%} (time-outs {out.timed_out.mean():6.1%})  median "
                f"users {np.median(out.users):9,.0f}  median hours {np.median(out.hours):6.1f}"
            )
    print(f"({time.perf_counter() - started:.0f} s)")
    print(json.dumps({"policies": summary(table), "new_policy": NEW_POLICY}))


def hash_name(name: str) -> int:
    return sum(ord(ch) * 31**i for i, ch in enumerate(name)) % (2**31)


def summary(table: dict[str, dict[str, Outcome]]) -> dict[str, dict[str, float]]:
    out = {}
    for name, by in table.items():
        users = np.concatenate([o.users for o in by.values()])
        hours = np.concatenate([o.hours for o in by.values()])
        out[name] = {
            "promote_worse10": float(by["worse10"].promoted.mean()),
            "promote_worse5": float(by["worse5"].promoted.mean()),
            "promote_better5": float(by["better5"].promoted.mean()),
            "abort_aa": float(by["aa"].aborted.mean()),
            "median_users": float(np.median(users)),
            "median_hours": round(float(np.median(hours)), 2),
        }
    return out


if __name__ == "__main__":
    main()
