"""The long-lived parts of one process, opened together and closed in reverse order.

The API (`devteam serve`) and the workers (`devteam worker`) build the same
`Services`, so both see one store, one broker and one configuration.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from devteam.agents.llm import LanguageModels
from devteam.agents.registry import build_agents, build_workspaces
from devteam.broker.factory import create_broker
from devteam.broker.protocol import Broker
from devteam.domain.agents import Agent
from devteam.domain.enums import AgentType
from devteam.housekeeping import RetentionJob
from devteam.mcp.manager import McpManager
from devteam.observability.health import Check
from devteam.orchestration.team_leader import TeamLeader
from devteam.security import Security
from devteam.settings import AppConfig, Settings
from devteam.storage import Database, Store
from devteam.storage.migrate import upgrade

if TYPE_CHECKING:
    from pydantic_ai.models import Model


@dataclass
class Services:
    settings: Settings
    config: AppConfig
    store: Store
    broker: Broker
    security: Security | None
    """Authentication for the API; None in a worker, which serves no API."""
    mcp: McpManager
    """MCP servers, reached with their resilience layers; sessions open on first use."""
    team_leader: TeamLeader
    llm: LanguageModels
    """The LLMs agents and the planner use (none when DEVTEAM_LLM_MODEL is unset)."""
    readiness_checks: dict[str, Check] = field(default_factory=dict)


def build_team_leader(
    settings: Settings,
    config: AppConfig,
    store: Store,
    broker: Broker,
    agents: Mapping[AgentType, Agent] | None = None,
    *,
    planner_model: Callable[[], Model | None] | None = None,
) -> TeamLeader:
    return TeamLeader(
        store=store,
        broker=broker,
        config=config.team_leader,
        config_path=settings.config_dir / "team_leader.yaml",
        agents=agents,
        planner_model=planner_model,
        planner_prompt=settings.prompts_dir / "team_leader.md",
        project_check=build_workspaces(settings, config).check,
    )


@asynccontextmanager
async def open_services(
    settings: Settings,
    config: AppConfig,
    *,
    migrate: bool | None = None,
    executors: bool = False,
    api: bool = True,
    agents: Mapping[AgentType, Agent] | None = None,
) -> AsyncIterator[Services]:
    """Open storage, broker, MCP and the TeamLeader (migrating the schema first when asked).

    With `executors`, this process also runs agent work (and the sweeper); on
    the way out it stops taking work, lets running attempts finish within
    `shutdown_grace_s` and hands the rest back.
    """
    async with AsyncExitStack() as stack:
        db = Database(settings.database_url, pool_size=settings.database_pool_size)
        store = Store(db)
        stack.push_async_callback(store.close)
        if settings.migrate_on_start if migrate is None else migrate:
            await upgrade(db)
        broker = create_broker(settings.redis_url, prefix=settings.redis_prefix)
        stack.push_async_callback(broker.close)
        security = (
            Security.create(settings, config, store, broker.rate_limit_storage()) if api else None
        )
        if security is not None:
            await security.follow(broker.pubsub)
        mcp = McpManager(config.mcp_servers, broker)
        stack.push_async_callback(mcp.close)
        llm = LanguageModels(
            settings,
            config.agents,
            broker.rate_limit_storage(),
            config_file=settings.config_dir / "agents.yaml",
        )
        stack.push_async_callback(llm.close)
        if agents is None:
            # Stuck detection follows the rules in force, also after a reload.
            agents = build_agents(settings, config, mcp, llm, rules=lambda: leader.config())
        leader = build_team_leader(
            settings, config, store, broker, agents, planner_model=llm.planner_model
        )
        services = Services(
            settings=settings,
            config=config,
            store=store,
            broker=broker,
            security=security,
            mcp=mcp,
            team_leader=leader,
            llm=llm,
        )
        # Rules reloaded by any process reach this one's TeamLeader too.
        await leader.follow_control()
        stack.push_async_callback(leader.unfollow_control)
        if executors:
            await leader.start(concurrency=settings.executor_concurrency)
            stack.push_async_callback(leader.stop, settings.shutdown_grace_s)
        retention = RetentionJob(store, config.security.retention)
        retention.start()
        stack.push_async_callback(retention.stop)
        services.readiness_checks.update(database=store.ping, broker=broker.ping)
        yield services
