"""gunicorn settings for `movierec serve` (read from MOVIEREC_* through Settings).

Workers are gthread (keep-alive connections, a few threads each), new connections waiting
on the poller rather than in a thread (`PollingThreadWorker` below); HUP reloads them
gracefully; Prometheus multiprocess files are cleaned at start and marked dead when a worker exits.
"""

from __future__ import annotations

import errno
import gc
import importlib
import os
import selectors
import shutil
import time
from functools import partial
from pathlib import Path
from typing import Any

from gunicorn.glogging import Logger
from gunicorn.workers.gthread import TConn, ThreadWorker

# One OpenMP thread per request thread: the workers' threads already run requests side by
# side, and an XGBoost call on a request's few hundred rows that wakes a pool of OpenMP
# threads spends more time in their start and spin than in the trees (measured on a fold-in,
# machine busy: 24 ms for the ranker's 100 rows, 0.5 ms on one thread). Set before any
# library that starts OpenMP is imported (`share_libraries` below imports XGBoost).
os.environ.setdefault("OMP_NUM_THREADS", "1")

from movierec.core.settings import Settings

# The worker: gthread, except that a new connection waits for its first bytes on the worker's
# poller, as a kept-alive one does, instead of in a thread. Stock gthread (gunicorn 27) hands
# every accepted connection to a thread that waits up to 5 s for the request: measured here,
# 300 connections opened and left silent held every thread of both workers and other clients'
# requests timed out. Here an idle connection costs a poller slot, gets a thread once bytes
# arrive, and is closed after `keepalive` seconds of silence. (A client that trickles its
# request byte by byte still holds a thread while it does: nginx's client_header_timeout is
# the answer to that.) Defined here, not in movierec.serve: gunicorn's master imports the
# worker class, and must not import the app (its metrics) before it forks.


class PollingThreadWorker(ThreadWorker):
    def accept(self, listener: Any) -> None:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client_sock, client_addr, listener.getsockname())  # non-blocking
        conn.timeout = time.monotonic() + self.cfg.keepalive
        self.pending_conns.append(conn)  # closed by murder_pending if nothing arrives
        self.poller.register(
            conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn)
        )


class AddressLogger(Logger):
    """gunicorn's logger, except that the master's "Listening at:" line names the address: with
    a socket per worker (`reuse_port`) the master holds none, and gunicorn printed
    "Listening at:  (pid)" with no address - the first line a newcomer reads."""

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        if msg.startswith("Listening at:") and args and not args[0]:
            where = ",".join(f"http://{address}" for address in self.cfg.bind)
            args = (f"{where} (a socket per worker)", *args[1:])
        super().info(msg, *args, **kwargs)


_settings = Settings.from_env()

bind = f"{_settings.serving.host}:{_settings.serving.port}"
workers = _settings.serving.workers
worker_class = PollingThreadWorker
threads = _settings.serving.threads
timeout = 30
graceful_timeout = 20
keepalive = 5
# A listening socket per worker (SO_REUSEPORT): the kernel spreads new connections over the
# workers. With one shared socket, a burst of keep-alive connections (a load balancer's pool,
# wrk) could all be accepted by one worker while the other idles: measured here, about one
# load test in three ran at a third of the throughput. The price: on HUP, connections still
# waiting in an old worker's accept queue are reset when it stops.
reuse_port = True
accesslog = None
logger_class = AddressLogger
errorlog = "-"
loglevel = "info"
proc_name = "movierec"
limit_request_line = 4094
# gunicorn 27's control socket (for gunicornc) lives at one path per user, which several
# instances on one machine would share, and in the image $HOME is not writable: not used here.
control_socket_disable = True
# the workers' heartbeat file in memory: on disk its fchmod can stall behind other writes
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None


# The libraries every worker imports, imported once in the master and frozen out of the
# garbage collector before the workers are forked: the workers then share those pages instead
# of each holding a private copy (the collector's passes write to every object they visit, so
# without the freeze each worker would copy most of them, page by page). With 2 workers on
# ml-100k: 116 MB PSS per worker instead of 188, 317 MB in all instead of 390
# (evaluation/bench_serve.py and bench_scale.py measure it).
SHARED_LIBRARIES = ("flask", "numpy", "pandas", "pyarrow.parquet", "scipy.sparse", "xgboost")


def share_libraries() -> None:
    for name in SHARED_LIBRARIES:
        importlib.import_module(name)
    gc.freeze()


def on_starting(server: Any) -> None:
    share_libraries()
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        Path(folder).mkdir(parents=True, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def worker_exit(server: Any, worker: Any) -> None:
    """Flush the served log of a worker that stops (HUP, shutdown)."""
    app = getattr(worker, "wsgi", None)
    state = getattr(app, "extensions", {}).get("movierec") if app is not None else None
    if state is not None:
        state.served.close()
