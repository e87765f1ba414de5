"""The `movierec` command: one subcommand per job. Handlers parse, call a job, print, exit.

Job modules are imported inside the handlers, so `movierec --help` stays fast and a command
only loads what it uses.

Exit codes: 0 success, 1 a known error (its message is printed), 2 bad usage; jobs with
more outcomes (retrain, release) document their own codes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from movierec.core.errors import MovierecError
from movierec.core.logs import configure_logging
from movierec.core.settings import DATASETS, Settings

log = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace, Settings], int]


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


# ---- data ------------------------------------------------------------------------------


def _cmd_data_fetch(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.data.movielens import fetch

    result = fetch(settings, args.dataset, force=args.force)
    _print_json(result.summary())
    return 0


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="real MovieLens data")
    dsub = p.add_subparsers(dest="data_command", required=True)
    f = dsub.add_parser("fetch", help="fetch a MovieLens dataset and write canonical tables")
    f.add_argument("--dataset", choices=DATASETS, default=None)
    f.add_argument("--force", action="store_true", help="rewrite the tables even if present")
    f.set_defaults(handler=_cmd_data_fetch)


def _cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.data.replay import replay

    result = replay(
        settings, args.dataset, args.out, start=args.start, end=args.end, seed=args.seed
    )
    _print_json(result.summary())
    return 0


def _add_replay(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="write real MovieLens ratings as the site's event log")
    p.add_argument("--dataset", choices=DATASETS, default=None)
    p.add_argument("--out", default=None, help="a file path or kafka:TOPIC (default: event source)")
    p.add_argument("--start", type=float, default=0.0, help="fraction of the ratings to start at")
    p.add_argument("--end", type=float, default=1.0, help="fraction of the ratings to end at")
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(handler=_cmd_replay)


def _cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.data.ingest import ingest

    result = ingest(settings, args.source)
    _print_json(result.summary())
    return 0


def _add_ingest(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="DataPipeline: new events -> validated Parquet tables")
    p.add_argument(
        "--source", default=None, help="a file path or kafka:TOPIC (default: event source)"
    )
    p.set_defaults(handler=_cmd_ingest)


# ---- models ----------------------------------------------------------------------------


def _cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.registry.routing import read_routing, set_stable
    from movierec.retrain.training import train_candidate

    result = train_candidate(settings, tune=not args.no_tune)
    out = result.summary()
    if args.serve_if_none and read_routing(settings) is None:
        from movierec.retrain.job import lake_counts, write_state

        set_stable(settings, result.version, "first model (movierec train --serve-if-none)")
        write_state(settings, result.version, "initial", lake_counts(settings))
        out["routed"] = "stable"
    _print_json(out)
    return 0


def _cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.retrain.training import evaluate_version

    _print_json(evaluate_version(settings, args.version))
    return 0


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a candidate from the lake and register it")
    p.add_argument("--no-tune", action="store_true", help="default parameters, no search")
    p.add_argument(
        "--serve-if-none", action="store_true", help="route it as stable if nothing is served yet"
    )
    p.set_defaults(handler=_cmd_train)
    e = sub.add_parser("evaluate", help="a version's metrics on the fixed holdout")
    e.add_argument("version")
    e.set_defaults(handler=_cmd_evaluate)


# ---- serve -----------------------------------------------------------------------------


def _cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import os
    import shutil
    from pathlib import Path

    env = dict(os.environ)
    if args.port:
        env["MOVIEREC_PORT"] = str(args.port)
    if args.workers:
        env["MOVIEREC_WORKERS"] = str(args.workers)
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(settings.cache_path / "prometheus"))
    env.setdefault("MOVIEREC_HOME", str(settings.home))
    conf = Path(__file__).resolve().parent / "serve" / "gunicorn_conf.py"
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
    cmd = [gunicorn, "-c", str(conf), "movierec.serve:create_app()"]
    if args.pidfile:
        cmd += ["--pid", args.pidfile]
    if args.daemon:
        cmd.append("--daemon")
    os.execve(gunicorn, cmd, env)
    return 0  # pragma: no cover - exec does not return


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the service under gunicorn (HUP reloads gracefully)")
    p.add_argument("--port", type=int, default=None, help="default MOVIEREC_PORT (8080)")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--daemon", action="store_true")
    p.add_argument("--pidfile", default=None)
    p.set_defaults(handler=_cmd_serve)


def _cmd_offline_eval(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from movierec.offline.offline_eval import offline_eval

    result = offline_eval(settings, Path(args.train), Path(args.test), Path(args.out), args.dataset)
    _print_json(result.summary())
    return 0


def _add_offline(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "offline-eval", help="train on any ratings split and write predictions, top-k, metrics"
    )
    p.add_argument("--train", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--dataset", choices=DATASETS, default=None)
    p.set_defaults(handler=_cmd_offline_eval)


# ---- retrain ---------------------------------------------------------------------------


def _cmd_retrain(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.retrain.job import retrain

    result = retrain(settings, force=args.force)
    _print_json(result.summary())
    return int(result.code)


def _add_retrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "retrain",
        help="cron job: refresh data, gate, train, compare, promote to canary",
        description="Exit codes: 0 promoted, 3 nothing to do (gate not met), "
        "4 candidate rejected, 5 busy (another run holds the lock), 1 error.",
    )
    p.add_argument("--force", action="store_true", help="skip the new-data gate")
    p.set_defaults(handler=_cmd_retrain)


# ---- release ---------------------------------------------------------------------------


def _cmd_release_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.release.evaluator import evaluate_release

    result = evaluate_release(settings, apply=not args.dry_run, refresh=not args.no_refresh)
    _print_json(result.summary())
    return 0


def _cmd_release_status(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.core.files import read_json
    from movierec.registry.routing import read_routing
    from movierec.release.evaluator import online_metrics_file

    routing = read_routing(settings)
    _print_json(
        {
            "routing": routing and routing.__dict__,
            "online_metrics": read_json(online_metrics_file(settings)),
        }
    )
    return 0


def _cmd_release_set_canary(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.registry.routing import set_canary

    routing = set_canary(settings, args.version, args.pct, args.reason)
    _print_json(routing.__dict__)
    return 0


def _add_release(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("release", help="canary release: evaluate, status, set-canary")
    rsub = p.add_subparsers(dest="release_command", required=True)
    e = rsub.add_parser(
        "evaluate",
        help="online evaluation: RAMP / HOLD / ABORT / PROMOTE the canary",
        description="Reads the served log and the event stream, computes per-arm metrics, "
        "decides and updates routing.json. Exit 0 whatever the decision; 1 on error.",
    )
    e.add_argument("--dry-run", action="store_true", help="decide and report, change nothing")
    e.add_argument("--no-refresh", action="store_true", help="do not ingest new events first")
    e.set_defaults(handler=_cmd_release_evaluate)
    s = rsub.add_parser("status", help="routing and the latest online metrics")
    s.set_defaults(handler=_cmd_release_status)
    c = rsub.add_parser("set-canary", help="route a registered version as canary")
    c.add_argument("version")
    c.add_argument("--pct", type=int, default=10)
    c.add_argument("--reason", default="set by hand")
    c.set_defaults(handler=_cmd_release_set_canary)


# ---- simulate --------------------------------------------------------------------------


def _cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.ops.simulate import simulate

    result = simulate(
        settings,
        base_url=args.url.rstrip("/"),
        requests_total=args.requests,
        rate=args.rate,
        concurrency=args.concurrency,
        seed=args.seed,
        out=args.out,
    )
    _print_json(result.summary())
    return 0 if result.failed == 0 else 1


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulated users request recommendations over HTTP and write watch/rate events",
        description="Exit 0 when every request succeeded, 1 when any failed.",
    )
    p.add_argument("--url", default="http://127.0.0.1:8080", help="the running service")
    p.add_argument("--requests", type=int, default=1000, help="how many requests to send")
    p.add_argument("--rate", type=float, default=50.0, help="requests per second")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--seed", type=int, default=None, help="default: MOVIEREC_SEED")
    p.add_argument("--out", default=None, help="event log: a path or kafka:TOPIC")
    p.set_defaults(handler=_cmd_simulate)


# ---- analyze ---------------------------------------------------------------------------


def _cmd_analyze(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.trust.analysis import analyze_offline, analyze_online

    result = analyze_offline(settings) if args.kind == "offline" else analyze_online(settings)
    _print_json(
        {"json": str(result.json_path), "plots": [str(p) for p in result.plots], **result.summary}
    )
    return 0


def _add_analyze(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="feedback-loop, fairness and concentration analyses")
    p.add_argument("kind", choices=("offline", "online"))
    p.set_defaults(handler=_cmd_analyze)


# ---- demo ------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.ops.demo import run_demo

    demo_settings = settings.replace(
        tune_iterations=min(settings.training.tune_iterations, 4),
        tune_seconds=min(settings.training.tune_seconds, 30.0),
        min_samples_per_arm=min(settings.release.min_samples_per_arm, 150),
    )
    summary = run_demo(demo_settings)
    return 0 if summary["failed_requests"] == 0 else 1


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole life cycle on ml-100k, with a timeline and a report")
    p.set_defaults(handler=_cmd_demo)


# ---- trace -----------------------------------------------------------------------------


def _print_trace(t: object, as_json: bool) -> None:
    d = t.as_dict()  # type: ignore[attr-defined]
    if as_json:
        _print_json(d)
        return
    m, data = d["model"], d["data"]
    if d["prediction"]:
        p = d["prediction"]
        print(
            f"request     {p['request_id']} at {p['timestamp']}: user {p['user_id']}, "
            f"arm {p['arm']}, {p['latency_ms']} ms"
        )
    print(f"model       {m['version']} (created {m['created_at']})")
    bundle = "verifies" if d["bundle_verified"] else f"DOES NOT VERIFY: {d['bundle_problem']}"
    print(f"bundle      {m['artifact_path']} {bundle}")
    print(
        f"code        commit {m['git_commit']} on {m['git_branch']}"
        f"{' (dirty tree)' if m['git_dirty'] else ''}"
    )
    print(f"libraries   {', '.join(f'{k} {v}' for k, v in m['framework_versions'].items())}")
    shown = [f"{k} {v:.4f}" for k, v in m["metrics"].items() if isinstance(v, float)]
    print(f"metrics     {', '.join(shown)}")
    match = "matches" if d["data_file_matches"] else "CHANGED since training"
    print(
        f"data        {data['data_id']}: {data['path']} ({data['rows']} rows), sha256 "
        f"{data['sha256'][:16]}... {match}"
    )


def _cmd_trace(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.trust.trace import trace

    t = trace(settings, args.request_id)
    _print_trace(t, args.json)
    return 0 if t.bundle_verified and t.data_file_matches else 1


def _cmd_lineage(args: argparse.Namespace, settings: Settings) -> int:
    from movierec.trust.trace import lineage

    t = lineage(settings, args.version)
    _print_trace(t, args.json)
    return 0 if t.bundle_verified and t.data_file_matches else 1


def _add_trace(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trace", help="a request -> model -> commit -> training data")
    p.add_argument("request_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_trace)
    q = sub.add_parser("lineage", help="a model version -> commit -> training data")
    q.add_argument("version")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=_cmd_lineage)


# ---- parser ----------------------------------------------------------------------------

_REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_data,
    _add_replay,
    _add_ingest,
    _add_models,
    _add_offline,
    _add_serve,
    _add_retrain,
    _add_release,
    _add_simulate,
    _add_analyze,
    _add_demo,
    _add_trace,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="movierec", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in _REGISTRARS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging("DEBUG" if args.verbose else None)
    try:
        settings = Settings.from_env()
        if getattr(args, "dataset", None) is None and hasattr(args, "dataset"):
            args.dataset = settings.data.dataset
        if getattr(args, "out", None) is None and hasattr(args, "out"):
            args.out = settings.data.event_source
        handler: Handler = args.handler
        return handler(args, settings)
    except MovierecError as exc:
        print(f"movierec: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("movierec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
