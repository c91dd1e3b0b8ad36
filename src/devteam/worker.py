"""`devteam worker`: executors only, and a small health and metrics endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator, Mapping

import uvicorn

from devteam.app import create_worker_app, start_webhook_dispatcher
from devteam.domain.agents import Agent
from devteam.domain.enums import AgentType
from devteam.observability import tracing
from devteam.observability.logging import get_logger
from devteam.services import open_services
from devteam.settings import AppConfig, Settings

log = get_logger("devteam.worker")


class _EndpointServer(uvicorn.Server):
    """A uvicorn server that leaves SIGTERM and SIGINT to the worker.

    The worker stops its executors first, gracefully; the endpoint stops after,
    so probes and the last scrape still see it while work is handed back.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run_worker(
    settings: Settings,
    config: AppConfig,
    port: int,
    *,
    agents: Mapping[AgentType, Agent] | None = None,
) -> None:
    """Run agent work until SIGTERM/SIGINT; then stop taking work and hand back the rest."""
    tracing.configure("devteam-worker")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with open_services(
        settings, config, executors=True, api=False, agents=agents
    ) as services:
        server: _EndpointServer | None = None
        serving: asyncio.Task[None] | None = None
        if port:
            server = _EndpointServer(
                uvicorn.Config(
                    create_worker_app(services),
                    host=settings.host,
                    port=port,
                    log_config=None,
                    lifespan="off",
                )
            )
            serving = asyncio.create_task(server.serve())
        dispatcher = await start_webhook_dispatcher(services)
        limit = settings.executor_concurrency or config.team_leader.concurrency.global_limit
        log.info("worker started", concurrency=limit, health_port=port or None)
        await stop.wait()
        log.info("worker stopping", grace_s=settings.shutdown_grace_s)
        # Executors first (running attempts get the grace period), then the endpoint,
        # then storage and broker as the block closes.
        await services.team_leader.stop(settings.shutdown_grace_s)
        if dispatcher is not None:
            await dispatcher.stop()
        if server is not None and serving is not None:
            server.should_exit = True
            await serving
    log.info("worker stopped")
    tracing.shutdown()
