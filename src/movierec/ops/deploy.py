"""Deployment after a promotion (`deploy_app.py`).

A promotion never needs a restart: the service re-reads `models/routing.json` on its own. What
deployment does is make sure the running service serves what routing says, and roll out new
code when there is new code:

- native (default): poll the service's `/readyz` until it reports the stable and canary
  versions and the canary percentage of `routing.json`, or time out.
- docker (`--docker`, with a compose project; `docker compose`, or `docker-compose` where the
  client has no compose plugin): rebuild the image, then restart the service
  replicas one at a time, each only after the previous one is healthy again, so the load
  balancer always has a replica to send requests to; then the same `/readyz` check through
  the load balancer.

Both first check that every routed bundle is on disk and intact: a service keeps serving a
model whose bundle was deleted from memory, but a restarted worker or replica could not load
it, so deployment refuses (exit 1, naming the bundle) rather than restart into an outage.

Exit codes: 0 the service serves the routing; 1 error (bad routing, a routed bundle missing
or corrupt, docker failure);
3 the service did not pick up the routing in time; 4 the service is unreachable.
"""

from __future__ import annotations

import enum
import functools
import logging
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from movierec.core.errors import MovierecError
from movierec.core.settings import Settings
from movierec.ops.service import poll_ready
from movierec.registry.bundles import bundle_path, verify_bundle
from movierec.registry.routing import read_routing

log = logging.getLogger(__name__)


class DeployCode(enum.IntEnum):
    OK = 0
    ERROR = 1
    NOT_PICKED_UP = 3
    UNREACHABLE = 4


@dataclass
class DeployResult:
    code: DeployCode
    message: str
    expected: dict[str, object] = field(default_factory=dict)
    observed: dict[str, object] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> dict[str, object]:
        return {**self.__dict__, "code": int(self.code)}


def expected_state(settings: Settings) -> dict[str, object]:
    routing = read_routing(settings)
    if routing is None:
        raise FileNotFoundError(f"{settings.routing_file} does not exist: nothing to deploy")
    for version in (routing.stable, routing.canary):
        if version is not None:
            verify_bundle(bundle_path(settings, version))  # ModelLoadError names the file
    return {
        "stable": routing.stable,
        "canary": routing.canary,
        "canary_pct": routing.canary_pct if routing.canary else 0,
    }


def wait_for_routing(
    url: str, expected: Mapping[str, object], timeout: float, checks: int = 5
) -> DeployResult:
    """Poll /readyz until `checks` answers in a row (several workers) match `expected`."""
    start = time.monotonic()
    ok, observed, reached = poll_ready(
        url,
        lambda body: all(body.get(k) == v for k, v in expected.items()),
        timeout=timeout,
        streak=checks,
    )
    seconds = time.monotonic() - start
    if ok:
        return DeployResult(
            DeployCode.OK, "the service serves the routing", dict(expected), observed, seconds
        )
    code = DeployCode.NOT_PICKED_UP if reached else DeployCode.UNREACHABLE
    msg = "the service did not pick up the routing" if reached else f"{url} is unreachable"
    return DeployResult(code, msg, dict(expected), observed, seconds)


@functools.cache
def compose_command() -> tuple[str, ...] | None:
    """`docker compose` (v2) when the client has it, else the stand-alone `docker-compose`;
    None when neither is installed."""
    try:
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ("docker", "compose")
    except (OSError, subprocess.SubprocessError):
        pass
    return ("docker-compose",) if shutil.which("docker-compose") else None


def _compose_cmd() -> tuple[str, ...]:
    cmd = compose_command()
    if cmd is None:
        raise FileNotFoundError("neither 'docker compose' nor docker-compose is installed")
    return cmd


def _compose(compose_file: str, *args: str) -> None:
    cmd = [*_compose_cmd(), "-f", compose_file, *args]
    log.info("running %s", " ".join(cmd))
    subprocess.run(cmd, check=True, timeout=1800)


def _health(compose_file: str, service: str) -> str:
    """The health of a service's container (its state when it has no health check)."""
    ids = subprocess.run(
        [*_compose_cmd(), "-f", compose_file, "ps", "-q", service],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()
    if not ids:
        return "missing"
    fmt = "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}"
    out = subprocess.run(
        ["docker", "inspect", "-f", fmt, ids[0]], capture_output=True, text=True, timeout=60
    )
    return out.stdout.strip() or "missing"


# nginx takes a replica it saw fail out of rotation for fail_timeout (5 s, docker/nginx.conf):
# a replica that is healthy again gets this long to be back in before the next one stops.
LB_SETTLE_SECONDS = 6.0


def rolling_restart(
    compose_file: str, services: list[str], timeout: float, settle: float = LB_SETTLE_SECONDS
) -> None:
    """Rebuild, then recreate one replica at a time, waiting for it to be healthy and for the
    load balancer to take it back."""
    _compose(compose_file, "build")
    for i, service in enumerate(services):
        if i:
            time.sleep(settle)
        _compose(compose_file, "up", "-d", "--no-deps", "--force-recreate", service)
        deadline = time.monotonic() + timeout
        while True:
            health = _health(compose_file, service)
            if health == "healthy":
                log.info("%s is healthy", service)
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{service} not healthy after {timeout} s (last state {health})")
            time.sleep(1)


def deploy(
    settings: Settings,
    url: str,
    *,
    timeout: float = 60.0,
    docker_compose_file: str | None = None,
    services: list[str] | None = None,
) -> DeployResult:
    start = time.monotonic()
    try:
        expected = expected_state(settings)
        if docker_compose_file:
            rolling_restart(docker_compose_file, services or ["app1", "app2"], timeout)
    except (MovierecError, subprocess.SubprocessError, TimeoutError, OSError) as exc:
        return DeployResult(DeployCode.ERROR, str(exc), seconds=time.monotonic() - start)
    result = wait_for_routing(url, expected, timeout)
    result.seconds = time.monotonic() - start
    return result
