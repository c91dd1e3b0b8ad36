"""`create_app(settings)`: the FastAPI application with its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.telemetry import TelemetryConfig

from devteam import __version__
from devteam.agents.llm import check_models
from devteam.agents.projects import Projects
from devteam.api import websocket
from devteam.api.errors import install_error_handlers
from devteam.api.hub import EventHub
from devteam.api.middleware import BodyLimitMiddleware, EdgeMiddleware
from devteam.api.openapi_rules import install_openapi_rules
from devteam.api.outages import OutageMiddleware
from devteam.api.routes import agents as agents_routes
from devteam.api.routes import (
    audit,
    auth,
    health,
    mcp,
    metrics,
    rules,
    sign_in,
    streams,
    tasks,
    users,
    webhooks,
)
from devteam.api.routes import projects as projects_routes
from devteam.api.swagger import install_docs, operation_id
from devteam.api.validation import HostileInputMiddleware
from devteam.api.wsframes import FrameProtocol
from devteam.domain.agents import Agent
from devteam.domain.enums import AgentType
from devteam.observability import tracing
from devteam.observability.logging import get_logger
from devteam.observability.metrics import BUILD_INFO, HTTP_IN_FLIGHT, observe_http
from devteam.security.tokens import configured_signing_keys
from devteam.services import Services, open_services
from devteam.settings import AppConfig, Settings, load_config
from devteam.ui import routes as ui
from devteam.webhooks.dispatcher import WebhookDispatcher

log = get_logger(__name__)

DESCRIPTION = """\
Submit development tasks to an AI team, follow them live, get typed results.

The whole contract (REST, WebSocket, Server-Sent Events, webhooks) is `docs/api.md`
in the DevTeam repository; this page documents every route with examples.

**Authorize** with a username and password (the button below), or send
`Authorization: Bearer <access_token>` from `POST /api/v1/auth/token`.

### Live events: `GET /api/v1/ws` (WebSocket)

Authenticate with the `Authorization: Bearer` header or, from a browser, the
`access_token` query parameter; a bad token closes the connection with code 4401.

Client messages: `{"type": "subscribe", "task_id", "after": 0}` (replay every event
with `seq > after`, then stream live ones, with no gap and no duplicate),
`{"type": "unsubscribe", "task_id"}`, `{"type": "ping"}`.

Server messages: `subscribed`, `event` (`{"type": "event", "task_id", "event"}`),
`pong`, `unsubscribed`, `heartbeat`, `error` (`{"code", "message", "task_id"?}`:
`not_found` for a task you may not read, `bad_request` for a malformed message), and
`lagged` (`{"task_id", "last_seq"}`: you fell too far behind; that subscription
stopped, subscribe again with `after = last_seq`). Messages larger than the limit
close the connection with 1009.

### Live events: `GET /api/v1/tasks/{task_id}/events/stream` (Server-Sent Events)

Each event as `id: <seq>` and `data: <Event JSON>`; resumes after `Last-Event-ID` (or
`after`), replays then streams live with no gap and no duplicate, sends keep-alive
comments, and ends once the task has finished and every event is sent.

### Webhooks

A task submitted with `webhook: {"url", "events"?}` is POSTed (as `GET
/api/v1/tasks/{task_id}` shows it) when it completes, fails or is cancelled, signed
per Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`) with
`DEVTEAM_WEBHOOK_SECRET`, retried with back-off for a day; `GET
/api/v1/tasks/{task_id}/webhooks` lists the attempts.
"""


_NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


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
    tracing.configure("devteam-api")
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
            app.state.hub = EventHub(services.broker)
            app.state.ws_connections = websocket.Connections()
            dispatcher = await start_webhook_dispatcher(services)
            app.state.projects = Projects(
                services.store, settings.workspaces_root, app_config.projects
            )
            log.info(
                "devteam started",
                database=services.store.db.dialect,
                broker=services.broker.kind,
                executors=executors,
                env=settings.env,
            )
            try:
                yield
            finally:
                if dispatcher is not None:
                    await dispatcher.stop()
                await app.state.ws_connections.close()
                await app.state.projects.close()
                await app.state.hub.close()
                if services.security is not None:
                    await services.security.close()
        log.info("devteam stopped")
        tracing.shutdown()

    app = FastAPI(
        title="DevTeam",
        version=__version__,
        summary="Run an AI development team: submit tasks, follow them live, get typed results.",
        description=DESCRIPTION,
        lifespan=lifespan,
        # `/docs` is served by `install_docs`, from the service's own files (no CDN);
        # ReDoc would load from a CDN, so there is none.
        docs_url=None,
        redoc_url=None,
        # Operation ids are the route functions' names: `submit_task`, `read_task`, ...
        generate_unique_id_function=operation_id,
        openapi_tags=[
            {"name": "tasks", "description": "Submit tasks and follow them."},
            {"name": "agents", "description": "The agents of the team."},
            {"name": "rules", "description": "The TeamLeader's rules."},
        ],
        # Without traces (see observability/tracing.py) no OpenTelemetry provider is set
        # up, so FastAPI's own telemetry would do nothing: saying so spares it asking the
        # providers on every request.
        telemetry=None if tracing.enabled() else _NO_TELEMETRY,
    )
    install_error_handlers(app)
    # Requests are matched against the routes in the order they were added: the task
    # routes (submissions are the busiest) first. No other route's path overlaps theirs.
    app.include_router(tasks.router)
    install_docs(app)
    tracing.instrument_app(app)
    install_openapi_rules(app, app_config.security.passwords)
    app.include_router(health.router)
    app.include_router(auth.router)
    app.include_router(sign_in.router)
    app.include_router(users.router)
    app.include_router(audit.router)
    app.include_router(mcp.router)
    app.include_router(metrics.router)
    app.include_router(streams.router)
    app.include_router(webhooks.router)
    app.include_router(agents_routes.router)
    app.include_router(rules.router)
    app.include_router(websocket.router)
    app.include_router(ui.router)
    app.include_router(projects_routes.router)

    # Innermost: its 422 answers get the CORS headers; inside the body limit, it
    # buffers no more than max_body_bytes.
    app.add_middleware(HostileInputMiddleware)
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
    # A lost database or Redis connection: one retry for a read, else a quick 503.
    app.add_middleware(OutageMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    # Added last, so it is outermost: every response, errors included, gets its id.
    app.add_middleware(
        EdgeMiddleware,
        hsts=settings.hsts,
        observers=[observe_http],
        in_flight=HTTP_IN_FLIGHT.inc,
    )
    return app


async def start_webhook_dispatcher(services: Services) -> WebhookDispatcher | None:
    """Deliver the webhook outbox from this process (when webhooks are configured)."""
    if services.settings.webhook_secret is None:
        return None
    dispatcher = WebhookDispatcher(services.store, services.settings, webhooks.render_task)
    await dispatcher.start()
    return dispatcher


def create_worker_app(services: Services) -> FastAPI:
    """What a worker serves: its health and its metrics (for probes and Prometheus)."""
    BUILD_INFO.info({"version": __version__})
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


def server_config(app: FastAPI, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """How `devteam serve` runs `app` under uvicorn (tests run it the same way)."""
    values: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "lifespan": "on",
        # Forwarded headers are believed only from the proxies the operator lists.
        "proxy_headers": bool(settings.forwarded_allow_ips),
        "forwarded_allow_ips": list(settings.forwarded_allow_ips),
        "server_header": False,
        "ws_max_size": settings.ws_max_message_bytes,
        # uvicorn's sans-I/O WebSocket implementation, letting the fan-out write frames
        # it encoded once straight to each connection (api/wsframes.py).
        "ws": FrameProtocol,
    }
    values.update(overrides)
    return uvicorn.Config(app, **values)
