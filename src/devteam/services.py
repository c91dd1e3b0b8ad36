"""The long-lived parts of one process, opened together and closed in reverse order.

The API (`devteam serve`) and the workers (`devteam worker`) build the same
`Services`, so both see one store, one broker and one configuration.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from devteam.broker.factory import create_broker
from devteam.broker.protocol import Broker
from devteam.mcp.manager import McpManager
from devteam.observability.health import Check
from devteam.settings import AppConfig, Settings
from devteam.storage import Database, Store
from devteam.storage.migrate import upgrade


@dataclass
class Services:
    settings: Settings
    config: AppConfig
    store: Store
    broker: Broker
    mcp: McpManager
    """MCP servers, reached with their resilience layers; sessions open on first use."""
    readiness_checks: dict[str, Check] = field(default_factory=dict)


@asynccontextmanager
async def open_services(
    settings: Settings, config: AppConfig, *, migrate: bool | None = None
) -> AsyncIterator[Services]:
    """Open storage, broker and the MCP manager (migrating the schema first when asked)."""
    async with AsyncExitStack() as stack:
        db = Database(settings.database_url, pool_size=settings.database_pool_size)
        store = Store(db)
        stack.push_async_callback(store.close)
        if settings.migrate_on_start if migrate is None else migrate:
            await upgrade(db)
        broker = create_broker(settings.redis_url, prefix=settings.redis_prefix)
        stack.push_async_callback(broker.close)
        mcp = McpManager(config.mcp_servers, broker)
        stack.push_async_callback(mcp.close)
        services = Services(settings=settings, config=config, store=store, broker=broker, mcp=mcp)
        services.readiness_checks.update(database=store.ping, broker=broker.ping)
        yield services
