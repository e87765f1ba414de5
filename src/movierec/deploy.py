"""Deployment after a promotion (`deploy_app.py`).

A promotion never needs a restart: the service re-reads `models/routing.json` on its own. What
deployment does is make sure the running service serves what routing says, and roll out new
code when there is new code:

- native (default): poll the service's `/readyz` until it reports the stable and canary
  versions and the canary percentage of `routing.json`, or time out.
- docker (`--docker`, with a compose project): rebuild the image, then restart the service
  replicas one at a time, each only after the previous one is healthy again, so the load
  balancer always has a replica to send requests to; then the same `/readyz` check through
  the load balancer.

Exit codes: 0 the service serves the routing; 1 error (bad routing, docker failure);
3 the service did not pick up the routing in time; 4 the service is unreachable.
"""

from __future__ import annotations

import enum
import logging
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from movierec.config import Settings
from movierec.registry import read_routing

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
    expected: dict[str, Any] = field(default_factory=dict)
    observed: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {**self.__dict__, "code": int(self.code)}


def expected_state(settings: Settings) -> dict[str, Any]:
    routing = read_routing(settings)
    if routing is None:
        raise FileNotFoundError(f"{settings.routing_file} does not exist: nothing to deploy")
    return {
        "stable": routing.stable,
        "canary": routing.canary,
        "canary_pct": routing.canary_pct if routing.canary else 0,
    }


def wait_for_routing(
    url: str, expected: dict[str, Any], timeout: float, checks: int = 5
) -> DeployResult:
    """Poll /readyz until `checks` answers in a row (several workers) match `expected`."""
    start = time.monotonic()
    observed: dict[str, Any] = {}
    streak = 0
    reached = False
    while time.monotonic() - start < timeout:
        try:
            observed = requests.get(f"{url}/readyz", timeout=3).json()
            reached = True
        except (requests.RequestException, ValueError):
            streak = 0
            time.sleep(0.5)
            continue
        if all(observed.get(k) == v for k, v in expected.items()):
            streak += 1
            if streak >= checks:
                return DeployResult(
                    DeployCode.OK,
                    "the service serves the routing",
                    expected,
                    observed,
                    time.monotonic() - start,
                )
        else:
            streak = 0
        time.sleep(0.2)
    code = DeployCode.NOT_PICKED_UP if reached else DeployCode.UNREACHABLE
    msg = "the service did not pick up the routing" if reached else f"{url} is unreachable"
    return DeployResult(code, msg, expected, observed, time.monotonic() - start)


def _compose(compose_file: str, *args: str) -> None:
    cmd = ["docker", "compose", "-f", compose_file, *args]
    log.info("running %s", " ".join(cmd))
    subprocess.run(cmd, check=True, timeout=1800)


def rolling_restart(compose_file: str, services: list[str], url: str, timeout: float) -> None:
    """Rebuild, then recreate one replica at a time, waiting for it to be healthy."""
    _compose(compose_file, "build")
    for service in services:
        _compose(compose_file, "up", "-d", "--no-deps", "--force-recreate", service)
        deadline = time.monotonic() + timeout
        while True:
            out = subprocess.run(
                ["docker", "compose", "-f", compose_file, "ps", "--format", "{{.Health}}", service],
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout.strip()
            if out == "healthy":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{service} not healthy after {timeout} s")
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
            rolling_restart(docker_compose_file, services or ["app1", "app2"], url, timeout)
    except (FileNotFoundError, subprocess.SubprocessError, TimeoutError, OSError) as exc:
        return DeployResult(DeployCode.ERROR, str(exc), seconds=time.monotonic() - start)
    result = wait_for_routing(url, expected, timeout)
    result.seconds = time.monotonic() - start
    return result
