"""The long-lived parts of one process, opened together and closed in reverse order.

The API (`devteam serve`) and the workers (`devteam worker`) build the same
`Services`, so both see one store, one broker and one configuration.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from devteam.broker.factory import create_broker
from devteam.broker.protocol import Broker
from devteam.domain.agents import Agent
from devteam.domain.enums import AgentType
from devteam.mcp.manager import McpManager
from devteam.observability.health import Check
from devteam.orchestration.team_leader import TeamLeader
from devteam.security import Security
from devteam.settings import AppConfig, Settings
from devteam.storage import Database, Store
from devteam.storage.migrate import upgrade


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
    readiness_checks: dict[str, Check] = field(default_factory=dict)


def project_check(workspaces_root: Path) -> Callable[[str], str | None]:
    """A project is a git repository in the workspaces folder."""

    def check(project_id: str) -> str | None:
        path = workspaces_root / project_id
        if not (path / ".git").exists():
            return f"project {project_id!r} does not exist: no git repository at {path}"
        return None

    return check


def build_team_leader(
    settings: Settings,
    config: AppConfig,
    store: Store,
    broker: Broker,
    agents: Mapping[AgentType, Agent] | None = None,
) -> TeamLeader:
    return TeamLeader(
        store=store,
        broker=broker,
        config=config.team_leader,
        config_path=settings.config_dir / "team_leader.yaml",
        agents=agents,
        planner_prompt=settings.prompts_dir / "team_leader.md",
        project_check=project_check(settings.workspaces_root),
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
        mcp = McpManager(config.mcp_servers, broker)
        stack.push_async_callback(mcp.close)
        leader = build_team_leader(settings, config, store, broker, agents)
        services = Services(
            settings=settings,
            config=config,
            store=store,
            broker=broker,
            security=security,
            mcp=mcp,
            team_leader=leader,
        )
        if executors:
            await leader.start(concurrency=settings.executor_concurrency)
            stack.push_async_callback(leader.stop, settings.shutdown_grace_s)
        services.readiness_checks.update(database=store.ping, broker=broker.ping)
        yield services
