"""The files of monitoring/ agree with each other (no Prometheus needed).

Whether the queries work on real data is tests/e2e/test_monitoring.py's job.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import prometheus

PROVISIONED = yaml.safe_load((prometheus.DATASOURCES / "prometheus.yml").read_text())["datasources"]
DASHBOARD_PROVIDER = yaml.safe_load(
    (prometheus.MONITORING / "grafana" / "provisioning" / "dashboards" / "devteam.yml").read_text()
)["providers"]
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range"}


def dashboard_ids(path: Path) -> str:
    return path.stem


@pytest.fixture(params=prometheus.DASHBOARDS, ids=dashboard_ids)
def dashboard(request: pytest.FixtureRequest) -> dict[str, Any]:
    return prometheus.load_dashboard(request.param)


def test_the_four_dashboards_are_there_with_distinct_uids() -> None:
    boards = [prometheus.load_dashboard(path) for path in prometheus.DASHBOARDS]
    assert sorted(board["title"] for board in boards) == [
        "DevTeam / Agents and MCP",
        "DevTeam / LLM usage",
        "DevTeam / Orchestration",
        "DevTeam / Overview",
    ]
    assert len({board["uid"] for board in boards}) == len(boards)


def test_one_prometheus_datasource_is_provisioned() -> None:
    assert len(PROVISIONED) == 1
    source = PROVISIONED[0]
    assert source["type"] == "prometheus"
    assert source["uid"] and source["url"] == "http://prometheus:9090"
    assert [p["type"] for p in DASHBOARD_PROVIDER] == ["file"]


def test_every_panel_and_query_uses_the_provisioned_datasource(dashboard: dict[str, Any]) -> None:
    expected = {"type": "prometheus", "uid": PROVISIONED[0]["uid"]}
    for panel in prometheus.panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == expected, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == expected, panel["title"]
            assert target["expr"].strip(), panel["title"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == expected, variable["name"]


def test_panels_have_titles_units_and_unique_ids_and_places(dashboard: dict[str, Any]) -> None:
    panels = list(prometheus.panels(dashboard))
    assert len({p["id"] for p in panels}) == len(panels)
    assert dashboard["schemaVersion"] >= 39
    for panel in panels:
        assert panel["title"] and set(panel["gridPos"]) == {"h", "w", "x", "y"}
        if panel["type"] != "row":
            assert panel["description"], panel["title"]
            assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]


def test_queries_only_use_defined_variables(dashboard: dict[str, Any]) -> None:
    defined = {v["name"] for v in dashboard["templating"]["list"]} | BUILTIN_VARIABLES
    for path in prometheus.DASHBOARDS:
        for query in prometheus.panel_queries(path) + prometheus.variable_queries(path):
            used = set(re.findall(r"\$\{?(\w+)", query.expr))
            assert used <= defined, f"{query.id}: {used - defined}"


def test_every_panel_query_is_scoped_by_the_job_and_instance_variables() -> None:
    for path in prometheus.DASHBOARDS:
        for query in prometheus.panel_queries(path):
            selectors = re.findall(r"\b(?:(?:devteam|process)_\w+|up)(\{[^}]*\})?", query.expr)
            assert selectors, query.id
            for selector in selectors:
                assert 'job=~"$job"' in selector and 'instance=~"$instance"' in selector, (
                    f"{query.id}: {query.expr}"
                )


def test_alert_rules_have_a_severity_a_summary_and_a_description() -> None:
    rules = prometheus.alert_rules()
    assert {rule["alert"] for rule in rules} >= {
        "DevTeamHighErrorRatio",
        "DevTeamHighLatency",
        "DevTeamMcpCircuitOpen",
        "DevTeamQueueBacklogGrowing",
        "DevTeamNoWorkerHeartbeat",
        "DevTeamHighTaskFailureRatio",
        "DevTeamBudgetsExhausted",
    }
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert next(r for r in rules if r["alert"] == "DevTeamMcpCircuitOpen")["for"] == "5m"


@pytest.mark.parametrize("shipped", prometheus.SHIPPED_CONFIGS, ids=lambda p: p.name)
def test_both_prometheus_configs_scrape_the_api_and_the_workers(shipped: Path) -> None:
    config = yaml.safe_load(shipped.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"devteam-api", "devteam-worker"} <= set(jobs)
    assert config["rule_files"] == ["alerts.yml"]
    for name in ("devteam-api", "devteam-worker"):
        assert jobs[name]["authorization"]["credentials_file"] == "/prometheus/metrics_token"
