"""What `GET /api/v1/mcp/servers` serves, and the manager on `Services`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from devteam.mcp.errors import ToolUnavailable
from devteam.mcp.manager import McpManager
from devteam.services import open_services
from devteam.settings import Settings, load_config
from tests.fakes.faults import FaultPlan
from tests.integration.mcp.conftest import MakeManager

REPO = Path(__file__).resolve().parents[3]


async def test_services_carry_the_manager_and_close_it(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    config = load_config(settings.config_dir)
    async with open_services(settings, config) as services:
        assert isinstance(services.mcp, McpManager)
        statuses = [s.model_dump(mode="json") for s in await services.mcp.status()]
        manager = services.mcp
    assert [s["name"] for s in statuses] == [
        "workspace",
        "sandbox",
        "git",
        "serena",
        "perplexity",
        "fetch",
    ]
    assert statuses[0] == {
        "name": "workspace",
        "transport": "stdio",
        "enabled": True,
        "circuit": "closed",
        "healthy": None,
        "tools": [],
        "last_error": None,
    }
    assert statuses[3]["name"] == "serena"
    assert statuses[3]["enabled"] is False and statuses[3]["healthy"] is False
    with pytest.raises(ToolUnavailable, match="closed"):
        await manager.call("fetch", "fetch", {"url": "http://127.0.0.1/"})


@pytest.mark.slow
async def test_a_probe_contacts_shared_servers(make_manager: MakeManager, tmp_path: Path) -> None:
    plan = FaultPlan(tmp_path / "fault")
    manager = make_manager(
        {
            "fault": plan.server_config(),
            "off": {"enabled": False, "transport": {"type": "stdio", "command": "unused"}},
        }
    )
    before = {s.name: s for s in await manager.status()}
    assert before["fault"].healthy is None and before["fault"].tools == []
    after = {s.name: s for s in await manager.status(probe=True)}
    assert after["fault"].healthy is True
    assert sorted(after["fault"].tools) == ["echo", "grow", "pid", "work"]
    assert after["off"].healthy is False
    assert await manager.check_health("off") is False
    assert after["off"].last_error is None
    assert {s.name: s for s in await manager.status()}["off"].last_error == (
        "disabled in the configuration"
    )
