"""A real PostgreSQL server for a test: Debian's binaries, a cluster made by initdb as the
unprivileged `postgres` user in a temporary folder, on a free loopback port; stopped after."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from movierec.ops.service import free_port


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def _run_as(user: str, args: list[str]) -> None:
    cmd = args if os.getuid() != 0 else ["runuser", "-u", user, "--", *args]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yields a DSN of a fresh database; skips the test when PostgreSQL is not installed."""
    bindir = _bin_dir()
    if bindir is None:
        pytest.skip("Debian's postgresql is not installed (scripts/system_deps.sh installs it)")
    user = "postgres" if os.getuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
    if os.getuid() == 0:
        try:
            pwd.getpwnam(user)
        except KeyError:
            pytest.skip("no unprivileged 'postgres' user to run the server as")
    folder = Path(tempfile.mkdtemp(prefix="movierec-pg-"))
    if os.getuid() == 0:
        shutil.chown(folder, user=user)
    data, port = folder / "data", free_port()
    _run_as(user, [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "movierec"])
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=on"
    log = str(folder / "server.log")
    _run_as(
        user, [str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", log, "-w", "start"]
    )
    try:
        yield f"postgresql://movierec@127.0.0.1:{port}/postgres"
    finally:
        _run_as(user, [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(folder, ignore_errors=True)
