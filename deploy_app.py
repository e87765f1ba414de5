#!/usr/bin/env python3
"""Deploy after a promotion: make sure the running service serves `models/routing.json`.

    python deploy_app.py [--url http://127.0.0.1:8080] [--timeout 60]
    python deploy_app.py --docker docker/docker-compose.yml [--services app1 app2]

Without --docker, checks that the running native service picked up the routing (a promotion
never needs a restart). With --docker, rebuilds the image and restarts the replicas one at a
time, then checks through the load balancer. Exit codes: 0 served, 1 error, 2 bad usage,
3 routing not picked up in time, 4 service unreachable.
"""

from __future__ import annotations

import argparse
import json
import sys

from movierec.core.logs import configure_logging
from movierec.core.settings import Settings
from movierec.ops.deploy import deploy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", default=None, help="the service (default: 127.0.0.1:MOVIEREC_PORT)"
    )
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--docker", metavar="COMPOSE_FILE", default=None)
    parser.add_argument("--services", nargs="+", default=None)
    args = parser.parse_args()
    configure_logging()
    settings = Settings.from_env()
    url = args.url or f"http://127.0.0.1:{settings.serving.port}"
    result = deploy(
        settings, url, timeout=args.timeout, docker_compose_file=args.docker, services=args.services
    )
    print(json.dumps(result.summary(), indent=2, default=str))
    return int(result.code)


if __name__ == "__main__":
    sys.exit(main())
