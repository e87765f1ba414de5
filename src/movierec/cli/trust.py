"""`movierec analyze`, `movierec trace`, `movierec lineage` (lazy job imports: see
`movierec.cli.data`)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from movierec.cli.common import Subcommands, add_command, emit, print_json
from movierec.core.settings import Settings

if TYPE_CHECKING:  # imported by the handlers, lazily (start-up time)
    from movierec.trust.trace import Trace


def _analyze(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.trust.analysis import analyze_offline, analyze_online  # lazy: start-up time

    result = analyze_offline(settings) if args.kind == "offline" else analyze_online(settings)
    summary = {"json": str(result.json_path), "plots": [str(p) for p in result.plots]}
    emit(args, summary | result.summary, f"{args.kind} analysis")
    return 0


def _print_trace(t: Trace) -> None:
    m, data = t.model, t.data
    if t.prediction:
        p = t.prediction
        print(
            f"request     {p.request_id} at {p.timestamp}: user {p.user_id}, "
            f"arm {p.arm}, {p.latency_ms} ms"
        )
    print(f"model       {m.version} (created {m.created_at})")
    bundle = "verifies" if t.bundle_verified else f"DOES NOT VERIFY: {t.bundle_problem}"
    print(f"bundle      {m.artifact_path} {bundle}")
    dirty = " (dirty tree)" if m.git_dirty else ""
    print(f"code        commit {m.git_commit} on {m.git_branch}{dirty}")
    print(f"libraries   {', '.join(f'{k} {v}' for k, v in m.framework_versions.items())}")
    shown = [f"{k} {v:.4f}" for k, v in m.metrics.items() if isinstance(v, float)]
    print(f"metrics     {', '.join(shown)}")
    match = "matches" if t.data_file_matches else "CHANGED since training"
    print(
        f"data        {data.data_id}: {data.path} ({data.rows} rows), sha256 "
        f"{data.sha256[:16]}... {match}"
    )


def _show(args: argparse.Namespace, found: Trace) -> int:
    print_json(found.as_dict()) if args.json else _print_trace(found)
    return 0 if found.bundle_verified and found.data_file_matches else 1


def _trace(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.trust.trace import trace  # lazy: start-up time

    return _show(args, trace(settings, args.request_id))


def _lineage(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.trust.trace import lineage  # lazy: start-up time

    return _show(args, lineage(settings, args.version))


def register(sub: Subcommands) -> None:
    a = add_command(sub, "analyze", "feedback-loop, fairness and concentration analyses", _analyze)
    a.add_argument("kind", choices=("offline", "online"))
    broken = "1 also when the bundle or the training data no longer matches its hash"
    t = add_command(
        sub, "trace", "a request -> model -> commit -> training data", _trace, codes=broken
    )
    t.add_argument("request_id")
    q = add_command(
        sub, "lineage", "a model version -> commit -> training data", _lineage, codes=broken
    )
    q.add_argument("version")
