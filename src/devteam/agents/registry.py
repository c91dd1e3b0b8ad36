"""The agents of one process, one per agent type, sharing one `AgentKit`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from devteam.agents.backend import BackendCoder
from devteam.agents.base import AgentKit, BaseAgent
from devteam.agents.codebase_analyzer import CodebaseAnalyzer
from devteam.agents.delivery import DeliveryAgent
from devteam.agents.frontend import FrontendCoder
from devteam.agents.llm import LanguageModels
from devteam.agents.prompts import PromptStore
from devteam.agents.research import ResearchAgent
from devteam.agents.reviewer import ReviewerAgent
from devteam.agents.workspaces import Workspaces
from devteam.domain.agents import Agent
from devteam.domain.enums import AgentType
from devteam.mcp.manager import McpManager
from devteam.settings import AppConfig, Settings
from devteam.settings.team_leader import TeamLeaderConfig

AGENT_CLASSES: list[type[BaseAgent[Any]]] = [
    ResearchAgent,
    CodebaseAnalyzer,
    FrontendCoder,
    BackendCoder,
    ReviewerAgent,
    DeliveryAgent,
]


def build_workspaces(settings: Settings, config: AppConfig) -> Workspaces:
    return Workspaces(settings.workspaces_root, config.agents.git)


def build_agents(
    settings: Settings,
    config: AppConfig,
    mcp: McpManager,
    llm: LanguageModels,
    *,
    rules: Callable[[], TeamLeaderConfig] | None = None,
) -> dict[AgentType, Agent]:
    """Every agent type's agent. `rules` gives the TeamLeader's rules in force (stuck
    detection follows a reload); by default, those of `config`."""
    kit = AgentKit(
        llm=llm,
        prompts=PromptStore(settings.prompts_dir),
        mcp=mcp,
        workspaces=build_workspaces(settings, config),
        config=config.agents,
        rules=rules or (lambda: config.team_leader),
        verification=config.verification,
    )
    return {cls.agent_type: cls(kit) for cls in AGENT_CLASSES}
