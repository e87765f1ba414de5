"""Monitoring as code: the Prometheus configs and alert rules pass promtool (checks and the
rules' own unit tests), the Grafana dashboard is well-formed and wired to the provisioned
datasource, and every movierec_ metric a panel or an alert queries is one the service really
exports - by its declared list AND by a live scrape of /metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from movierec.core.files import atomic_write_json
from movierec.core.online_metrics import ArmMetrics
from movierec.registry.routing import set_canary, set_stable
from movierec.serve import create_app, datagauges, metrics
from tests.conftest import REPO, make_settings
from tests.servicekit import make_bundle

EXPORTED = metrics.EXPORTED + datagauges.EXPORTED

PROMETHEUS = REPO / "monitoring" / "prometheus"
GRAFANA = REPO / "monitoring" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "movierec.json"
ALERTS = {
    "MovierecAvailabilityLow",
    "MovierecLatencyP99High",
    "MovierecCanaryErrorRateHigh",
    "MovierecSatisfactionRatioOutOfRange",
    "MovierecCanaryCtrDrop",
    "MovierecRatingPoisoning",
    "MovierecDataDrift",
    "MovierecCanaryShownWorse",
    "MovierecModelLoadFailures",
    "MovierecServedLogDropping",
    "MovierecServedLogDegraded",
    "MovierecRoutingRefused",
    "MovierecModelBundleMissing",
    "MovierecRateLimitStorageDown",
}

# a movierec_ metric name in PromQL: a whole identifier, whatever follows it (a selector `{`,
# a range `[`, a space, but also `)` as in `max(movierec_canary_percent)`)
_NAME_RE = re.compile(r"(?<![\w:])movierec_[A-Za-z0-9_:]*")
_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')


def _promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip(
            "promtool is not installed (Debian's prometheus package: scripts/system_deps.sh)"
        )
    return binary


def _run(*args: str) -> str:
    run = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=PROMETHEUS)
    assert run.returncode == 0, f"{' '.join(args)}:\n{run.stdout}\n{run.stderr}"
    return run.stdout + run.stderr


# ---- promtool -----------------------------------------------------------------------------


def test_alert_rules_pass_promtool_check() -> None:
    out = _run(_promtool(), "check", "rules", "--lint=all", "--lint-fatal", "alerts.yml")
    assert f"SUCCESS: {len(ALERTS)} rules found" in out


def test_alert_rules_unit_tests_pass() -> None:
    out = _run(_promtool(), "test", "rules", "alerts_test.yml")
    assert "SUCCESS" in out


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    text = (PROMETHEUS / "alerts_test.yml").read_text()
    cases = re.findall(r"alertname:\s*(\w+)\s*\n\s*exp_alerts:\s*(\[\])?", text)
    assert {name for name, empty in cases if not empty} == ALERTS
    assert {name for name, empty in cases if empty} == ALERTS


def test_native_prometheus_config_is_valid_and_loads_the_rules() -> None:
    text = (PROMETHEUS / "prometheus.yml").read_text()
    assert "127.0.0.1:8080" in text
    out = _run(_promtool(), "check", "config", "prometheus.yml")
    assert f"SUCCESS: {len(ALERTS)} rules found" in out


def test_docker_prometheus_config_is_valid_and_loads_the_rules(tmp_path: Path) -> None:
    """The compose stack mounts alerts.yml at /etc/prometheus/alerts.yml: check the file as
    is (syntax), then a copy pointing at this checkout's alerts.yml (rules load too)."""
    promtool = _promtool()
    text = (PROMETHEUS / "prometheus-docker.yml").read_text()
    assert "app1:8080" in text and "app2:8080" in text
    assert "/etc/prometheus/alerts.yml" in text
    _run(promtool, "check", "config", "--syntax-only", "prometheus-docker.yml")
    local = tmp_path / "prometheus-docker.yml"
    local.write_text(text.replace("/etc/prometheus/alerts.yml", str(PROMETHEUS / "alerts.yml")))
    out = _run(promtool, "check", "config", str(local))
    assert f"SUCCESS: {len(ALERTS)} rules found" in out


# ---- reading the files --------------------------------------------------------------------


def _rule_exprs() -> dict[str, str]:
    """alert name -> expr from alerts.yml. The venv has no YAML library, so this reads the
    file's layout (`- alert:` then `expr:` inline or as a block); promtool checks the YAML."""
    lines = (PROMETHEUS / "alerts.yml").read_text().splitlines()
    exprs: dict[str, str] = {}
    alert: str | None = None
    i = 0
    while i < len(lines):
        if m := re.match(r"\s*- alert:\s*(\S+)", lines[i]):
            alert = m.group(1)
        elif (m := re.match(r"(\s*)expr:\s*(.*)$", lines[i])) and alert is not None:
            indent, value = len(m.group(1)), m.group(2).strip()
            if value in ("|", "|-", ">", ">-"):
                block: list[str] = []
                while i + 1 < len(lines) and (
                    not lines[i + 1].strip() or _indent(lines[i + 1]) > indent
                ):
                    i += 1
                    block.append(lines[i].strip())
                value = " ".join(block)
            exprs[alert] = value.strip()
        i += 1
    return exprs


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def _panel_exprs() -> dict[str, list[str]]:
    return {p["title"]: [t["expr"] for t in p.get("targets", [])] for p in _dashboard()["panels"]}


def _yaml_value(path: Path, key: str) -> str:
    m = re.search(rf"^\s*-?\s*{key}:\s*[\"']?([^\"'\s#]+)", path.read_text(), re.MULTILINE)
    assert m, f"{key} not in {path}"
    return m.group(1)


def _names(expr: str) -> set[str]:
    """movierec_ metric names of a PromQL expression (string literals left out)."""
    return set(_NAME_RE.findall(_STRING_RE.sub('""', expr)))


def test_name_extraction() -> None:
    expr = (
        'sum by (arm) (rate(movierec_requests_total{arm="movierec_x"}[5m])) / '
        "max(movierec_canary_percent) and movierec_a [5m] or xmovierec_b or movierec_c"
    )
    assert _names(expr) == {
        "movierec_requests_total",
        "movierec_canary_percent",
        "movierec_a",
        "movierec_c",
    }
    assert _rule_exprs().keys() == ALERTS
    assert all(_names(e) for e in _rule_exprs().values())


# ---- the dashboard ------------------------------------------------------------------------


def test_dashboard_is_a_grafana_dashboard() -> None:
    board = _dashboard()
    assert 36 <= board["schemaVersion"] <= 41
    assert board["uid"] and board["title"]
    panels = board["panels"]
    assert len(panels) >= 8
    ids = [p["id"] for p in panels]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == len(ids)
    cells: set[tuple[int, int]] = set()
    for p in panels:
        pos = p["gridPos"]
        assert {"x", "y", "w", "h"} <= pos.keys(), p["title"]
        assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] >= 0 and pos["x"] + pos["w"] <= 24
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & mine, f"panel {p['title']!r} overlaps another"
        cells |= mine
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(set(refs)) == len(refs) and all(t["expr"].strip() for t in p["targets"])


def test_dashboard_uses_the_provisioned_datasource() -> None:
    source = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
    uid = _yaml_value(source, "uid")
    assert _yaml_value(source, "type") == "prometheus"
    assert _yaml_value(source, "url") == "http://prometheus:9090"
    for p in _dashboard()["panels"]:
        assert p["datasource"] == {"type": "prometheus", "uid": uid}, p["title"]
        for t in p["targets"]:
            assert t.get("datasource", p["datasource"])["uid"] == uid, p["title"]
    provider = GRAFANA / "provisioning" / "dashboards" / "movierec.yml"
    assert _yaml_value(provider, "type") == "file"
    assert _yaml_value(provider, "path") == "/var/lib/grafana/dashboards"


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    exprs = [e for es in _panel_exprs().values() for e in es]
    used = set().union(*(_names(e) for e in exprs))
    assert {
        "movierec_requests_total",  # request rate by status/arm
        "movierec_request_latency_seconds_bucket",  # p50/p95/p99
        "movierec_online_ctr",
        "movierec_online_satisfaction_ratio",
        "movierec_canary_percent",
        "movierec_model_loaded",
        "movierec_model_load_failures_total",
        "movierec_rate_limited_total",
        "movierec_data_rating_psi",  # drift (issue 18)
        "movierec_data_poisoned_movies",  # poisoning (issue 18)
    } <= used
    quantiles = {q for e in exprs for q in re.findall(r"histogram_quantile\(\s*([0-9.]+)", e)}
    assert quantiles >= {"0.5", "0.95", "0.99"}


# ---- every queried name is really exported --------------------------------------------------


def _declared() -> set[str]:
    """EXPORTED with the sample suffixes Prometheus sees (histograms, counters)."""
    out: set[str] = set()
    for name in EXPORTED:
        out |= {name, f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        if not name.endswith("_total"):
            out.add(f"{name}_total")
    return out


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[set[str]]:
    """Sample names of a live /metrics: the app built as in the unit tests, with traffic on
    both arms, a refused model version, and the evaluator's online_metrics.json present."""
    settings = make_settings(tmp_path_factory.mktemp("monitoring"), routing_check_seconds=0.05)
    make_bundle(settings, "v1", "one")
    make_bundle(settings, "v2", "two")
    broken = make_bundle(settings, "v3", "three")
    (broken / "recommendations.parquet").write_bytes(b"garbage")
    set_stable(settings, "v1", "test")
    set_canary(settings, "v3", 50, "a version that fails to load")
    arms = {
        arm: ArmMetrics(arm=arm, model_version=v, requests=10, ctr=0.2, error_rate=0.0).to_json()
        for arm, v in (("stable", "v1"), ("canary", "v2"))
    }
    record = {"arms": arms, "evaluated_at": datetime.now(UTC).isoformat()}
    atomic_write_json(settings.online_metrics_file, record)
    _write_refresh_report(settings.lake_path, poisoned=["heat+1995"])
    app = create_app(settings.replace(rate_limit_per_minute=30))
    state = app.extensions["movierec"]
    try:
        assert "v3" in state.models.snapshot.refused
        set_canary(settings, "v2", 50, "a good canary")
        state.models.refresh()
        assert state.models.snapshot.canary is not None
        client = app.test_client()
        codes = {client.get("/recommend/abc").status_code}
        codes |= {client.get(f"/recommend/{u}").status_code for u in range(40)}
        assert codes == {200, 400, 429}
        text = client.get("/metrics").get_data(as_text=True)
    finally:
        state.models.stop()
        state.served.close()
    yield {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def _write_refresh_report(lake: Path, poisoned: list[str]) -> None:
    """A DataPipeline commit record naming a refresh report, as `movierec ingest` writes."""
    report = lake.parent / "data_refresh_reports" / "20250101T000000000000Z.json"
    atomic_write_json(
        report,
        {
            "created_at": datetime.now(UTC).isoformat(),
            "quarantined": 3,
            "drift": {
                "checked": True,
                "drifted": True,
                "rating_psi": 0.31,
                "genre_psi": 0.05,
                "activity_ks": {"statistic": 0.12, "p_value": 0.001},
            },
            "poisoning": {
                "flagged": [{"movie_id": m} for m in poisoned],
                "flagged_event_count": 40 * len(poisoned),
            },
        },
    )
    atomic_write_json(lake / "_state.json", {"last_report": str(report)})


def test_every_declared_metric_is_exported_live(scraped: set[str]) -> None:
    for name in EXPORTED:
        variants = {name, f"{name}_bucket", f"{name}_total"}
        assert variants & scraped, f"{name} is in EXPORTED but not in a live /metrics"


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_queries_use_only_exported_metrics(source: str, scraped: set[str]) -> None:
    exprs = (
        {f"panel {t}": e for t, es in _panel_exprs().items() for e in es}
        if source == "dashboard"
        else {f"alert {a}": e for a, e in _rule_exprs().items()}
    )
    assert exprs
    declared = _declared()
    for where, expr in exprs.items():
        names = _names(expr)
        assert names, f"{where} queries no movierec_ metric: {expr}"
        assert names <= declared, f"{where}: {names - declared} not in metrics.EXPORTED"
        assert names <= scraped, f"{where}: {names - scraped} not in a live /metrics"
