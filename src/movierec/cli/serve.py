"""`movierec serve`: the service under gunicorn (HUP reloads gracefully); `movierec fold-in`:
the process beside it that folds users in as their events arrive (`serve.live.fold_in_process`)."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import threading
from pathlib import Path

from movierec.cli.common import Subcommands, add_command, emit
from movierec.core.settings import Settings

GUNICORN_CONF = Path(__file__).resolve().parents[1] / "serve" / "gunicorn_conf.py"


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    env = dict(os.environ)
    if args.port:
        env["MOVIEREC_PORT"] = str(args.port)
    if args.workers:
        env["MOVIEREC_WORKERS"] = str(args.workers)
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(settings.cache_path / "prometheus"))
    env.setdefault("MOVIEREC_HOME", str(settings.home))
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
    cmd = [gunicorn, "-c", str(GUNICORN_CONF), "movierec.serve:create_app()"]
    if args.pidfile:
        cmd += ["--pid", args.pidfile]
    if args.daemon:
        cmd.append("--daemon")
    os.execve(gunicorn, cmd, env)
    return 0  # pragma: no cover - exec does not return


def _fold_in(args: argparse.Namespace, settings: Settings) -> int:
    # Its counters are its own (it serves no /metrics), never in the service's multiprocess
    # folder: the image names that folder for every process, and only gunicorn makes it.
    # prometheus_client reads the variable when it is first imported, below.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    from movierec.serve.live.fold_in_process import Folder  # lazy: loading models imports xgboost

    folder = Folder(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    report = folder.run(stop, args.heartbeat)
    emit(args, report.summary(), f"fold-in stopped: {report.computed:,} lists folded in")
    return 0


def register(sub: Subcommands) -> None:
    p = add_command(sub, "serve", "run the service under gunicorn (HUP reloads gracefully)", _serve)
    p.description = (
        f"{p.description} Rate limit: MOVIEREC_RATE_LIMIT_PER_MINUTE requests per client (0: "
        "none). Without MOVIEREC_RATE_LIMIT_STORAGE the limit is kept PER GUNICORN WORKER (and "
        "per replica): a client can get workers x replicas times the limit. With "
        "MOVIEREC_RATE_LIMIT_STORAGE=redis://HOST:PORT/DB every worker and replica shares one "
        "count (Redis unreachable: requests pass, counted in "
        "movierec_rate_limit_errors_total). The client is the connection's address; "
        "X-Forwarded-For is believed only from MOVIEREC_TRUSTED_PROXIES (addresses or "
        "networks, comma-separated), and then only the entry those proxies appended. "
        "Served-log records that logs/ cannot take wait in MOVIEREC_SPILL_DIR (data/spill) "
        "and are read back; /readyz lists what is degraded; /openapi.json describes the API."
    )
    p.add_argument("--port", type=int, default=None, help="default MOVIEREC_PORT (8080)")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--daemon", action="store_true")
    p.add_argument("--pidfile", default=None)

    f = add_command(
        sub,
        "fold-in",
        "fold users in as their events arrive, for every worker (until SIGTERM/SIGINT)",
        _fold_in,
    )
    f.description = (
        f"{f.description} Follows the online store's change feed, folds each changed user in "
        "with the model of their arm, and writes the list beside the store (SQLite: "
        "data/fold_in_lists.sqlite; Redis: movierec:lists:<version>). While it runs, the "
        "workers take its lists instead of folding in themselves (waiting at most "
        "MOVIEREC_FOLD_IN_DEFER_MS for one); without it they fold in themselves."
    )
    f.add_argument(
        "--heartbeat",
        type=Path,
        default=None,
        help="a file touched every second while the shared lists take writes (a health check)",
    )
