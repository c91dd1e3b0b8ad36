"""A fresh `devteam serve` exports every series whose labels are known, at zero."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devteam.domain.enums import AgentType
from devteam.security.ratelimit import RateLimitScope
from tests.processes import Process, clean_env

pytestmark = pytest.mark.slow


def test_a_fresh_server_exports_known_series_at_zero(tmp_path: Path) -> None:
    server = Process(
        "serve",
        ["serve"],
        clean_env(DEVTEAM_JWT_SECRET="x" * 40),
        tmp_path / "serve.log",
        cwd=tmp_path,
    )
    try:
        server.wait_ready()
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
    finally:
        server.stop()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }

    def value(name: str, **labels: str) -> float | None:
        return samples.get((name, tuple(sorted(labels.items()))))

    for scope in [*(s.value for s in RateLimitScope), "llm", "mcp"]:
        assert value("devteam_rate_limit_rejections_total", scope=scope) == 0, scope
    assert value("devteam_rate_limit_unavailable_total", scope="read", action="allowed") == 0
    assert value("devteam_rate_limit_unavailable_total", scope="write", action="refused") == 0
    for agent in AgentType:
        assert value("devteam_tasks_submitted_total", agent_type=agent.value) == 0
        assert value("devteam_task_retries_total", agent_type=agent.value) == 0
        assert (
            value("devteam_agent_executions_total", agent_type=agent.value, outcome="failed") == 0
        )
    assert value("devteam_budget_exceeded_total", budget="cost") == 0
    assert value("devteam_ws_drops_total", reason="lagged") == 0
    assert value("devteam_ws_messages_total", direction="in", type="subscribe") == 0
    assert value("devteam_retention_purged_total", kind="tasks") == 0
