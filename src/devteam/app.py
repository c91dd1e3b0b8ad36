"""`create_app(settings)`: the FastAPI application with its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from devteam import __version__
from devteam.agents.llm import check_models
from devteam.api.errors import install_error_handlers
from devteam.api.middleware import BodyLimitMiddleware, EdgeMiddleware
from devteam.api.routes import audit, auth, health, mcp, metrics, users
from devteam.domain.agents import Agent
from devteam.domain.enums import AgentType
from devteam.observability.logging import get_logger
from devteam.observability.metrics import BUILD_INFO, HTTP_IN_FLIGHT, observe_http
from devteam.security.tokens import configured_signing_keys
from devteam.services import Services, open_services
from devteam.settings import AppConfig, Settings, load_config

log = get_logger(__name__)


def create_app(
    settings: Settings,
    config: AppConfig | None = None,
    *,
    executors: bool = True,
    agents: Mapping[AgentType, Agent] | None = None,
) -> FastAPI:
    """Build the app; storage, broker and TeamLeader open when it starts, close when it stops.

    With `executors` (the embedded default) the process also runs agent work;
    without, it only serves the API and workers elsewhere run the work.
    """
    app_config = config if config is not None else load_config(settings.config_dir)
    BUILD_INFO.info({"version": __version__})
    # Unusable token keys (e.g. no DEVTEAM_JWT_SECRET in production) stop start-up here.
    configured_signing_keys(settings, app_config.security.tokens)
    # So does an LLM model that cannot work (unknown provider, no API key).
    check_models(settings, app_config.agents, settings.config_dir / "agents.yaml")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_services(
            settings, app_config, executors=executors, agents=agents
        ) as services:
            app.state.services = services
            log.info(
                "devteam started",
                database=services.store.db.dialect,
                broker=services.broker.kind,
                executors=executors,
                env=settings.env,
            )
            yield
        log.info("devteam stopped")

    app = FastAPI(
        title="DevTeam",
        version=__version__,
        summary="Run an AI development team: submit tasks, follow them live, get typed results.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(auth.router)
    app.include_router(users.router)
    app.include_router(audit.router)
    app.include_router(mcp.router)
    app.include_router(metrics.router)

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=[
                "X-Request-ID",
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
                "RateLimit-Policy",
            ],
        )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    # Added last, so it is outermost: every response, errors included, gets its id.
    app.add_middleware(
        EdgeMiddleware,
        hsts=settings.hsts,
        observers=[observe_http],
        in_flight=HTTP_IN_FLIGHT.inc,
    )
    return app


def create_worker_app(services: Services) -> FastAPI:
    """What a worker serves: its health and its metrics (for probes and Prometheus)."""
    app = FastAPI(
        title="DevTeam worker",
        version=__version__,
        summary="Health and metrics of a DevTeam worker process.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.add_middleware(EdgeMiddleware, observers=[observe_http], in_flight=HTTP_IN_FLIGHT.inc)
    return app
