"""Agents as the TeamLeader runs them, built from settings, on real MCP servers and git."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devteam.agents.llm import LanguageModels
from devteam.agents.registry import build_agents
from devteam.broker.memory import MemoryBroker
from devteam.broker.protocol import Broker
from devteam.domain.agents import Agent
from devteam.domain.enums import AgentType
from devteam.domain.events import EventType
from devteam.domain.tasks import TaskResult, TaskSpec, Usage
from devteam.mcp.manager import McpManager
from devteam.settings import AppConfig, Settings, load_config
from tests.sample_project import make_project

REPO = Path(__file__).resolve().parents[3]
FAKE_MODEL = "openai-chat:fake-model"

FAST_AGENTS = {
    "retry": {"initial_backoff_s": 0.01, "max_backoff_s": 0.05, "jitter_s": 0.0},
    "prices": {FAKE_MODEL: {"input": 1.0, "output": 2.0}},
}


def app_config(**sections: dict[str, Any]) -> AppConfig:
    """The repository's config, with sections merged over it (one level deep)."""
    shipped = load_config(REPO / "config").model_dump(by_alias=True)
    for section, values in sections.items():
        for key, value in values.items():
            current = shipped[section].get(key)
            if isinstance(current, dict) and isinstance(value, dict):
                shipped[section][key] = {**current, **value}
            else:
                shipped[section][key] = value
    return AppConfig.model_validate(shipped)


class RecordingContext:
    """An `AgentContext` that keeps what the agent reported."""

    def __init__(self, dependencies: Mapping[str, TaskResult] | None = None) -> None:
        self.dependencies = dict(dependencies or {})
        self.progress_events: list[tuple[str, dict[str, Any]]] = []
        self.tool_events: list[dict[str, Any]] = []
        self.events: list[tuple[EventType, dict[str, Any]]] = []
        self.usage = Usage()

    async def progress(self, message: str, **data: Any) -> None:
        self.progress_events.append((message, data))

    async def tool_call(self, server: str, tool: str, outcome: str, **data: Any) -> None:
        self.tool_events.append({"server": server, "tool": tool, "outcome": outcome, **data})

    def add_usage(self, usage: Usage) -> None:
        self.usage = self.usage + usage

    async def record(self, type: EventType, **data: Any) -> None:
        self.events.append((type, data))


def make_spec(agent_type: AgentType, **overrides: Any) -> TaskSpec:
    task_id = uuid.uuid4()
    values: dict[str, Any] = {
        "id": task_id,
        "root_id": uuid.uuid4(),
        "parent_id": None,
        "key": agent_type.value,
        "agent_type": agent_type,
        "task_type": "feature",
        "task": "Add a /version endpoint that returns the app version",
        "root_task": "Add a /version endpoint that returns the app version, shown on the page",
        "complexity": 3,
        "priority": 5,
        "project_id": "shop",
        "metadata": {},
        "phase": None,
        "attempt": 1,
        "created_by": uuid.uuid4(),
        "deadline": None,
        "max_tokens": None,
        "max_cost_usd": None,
    }
    values.update(overrides)
    return TaskSpec(**values)


@dataclass
class Team:
    agents: dict[AgentType, Agent]
    llm: LanguageModels
    mcp: McpManager
    settings: Settings
    config: AppConfig

    async def run(self, spec: TaskSpec, context: RecordingContext | None = None) -> TaskResult:
        return await self.agents[spec.agent_type].execute(spec, context or RecordingContext())


MakeTeam = Callable[..., Team]


@pytest.fixture
def workspaces(tmp_path: Path) -> Path:
    """A workspaces folder holding the sample project `shop`."""
    root = tmp_path / "workspaces"
    make_project(root / "shop")
    return root


@pytest.fixture
async def make_team(
    tmp_path: Path, workspaces: Path, make_settings: Callable[..., Settings]
) -> AsyncIterator[MakeTeam]:
    """`make_team(llm_url=None, broker=None, **config_sections)`: agents on their own services."""
    opened: list[tuple[LanguageModels, McpManager]] = []
    brokers: list[Broker] = []

    def make(
        *,
        llm_url: str | None = None,
        broker: Broker | None = None,
        settings: dict[str, Any] | None = None,
        **sections: dict[str, Any],
    ) -> Team:
        overrides: dict[str, Any] = {"workspaces_root": workspaces}
        if llm_url is not None:
            overrides.update(llm_model=FAKE_MODEL, llm_base_url=llm_url)
        overrides.update(settings or {})
        agents_section = {**FAST_AGENTS, **sections.pop("agents", {})}
        config = app_config(agents=agents_section, **sections)
        built = make_settings(**overrides)
        if broker is None:
            broker = MemoryBroker()
            brokers.append(broker)
        mcp = McpManager(config.mcp_servers, broker)
        llm = LanguageModels(built, config.agents, broker.rate_limit_storage())
        opened.append((llm, mcp))
        return Team(build_agents(built, config, mcp, llm), llm, mcp, built, config)

    yield make
    for llm, mcp in opened:
        await llm.close()
        await mcp.close()
    for broker in brokers:
        await broker.close()
