from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from devteam.app import create_app
from devteam.settings import Settings


@pytest.fixture
def make_client(
    make_settings: Callable[..., Settings],
) -> Callable[..., Any]:
    """`async with make_client(**settings) as (app, client)`: the app with its lifespan.

    The app runs no executors unless asked (`executors=True`): most API tests do
    not need agent work, and starting none keeps them fast.
    """
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def make(
        app: FastAPI | None = None, *, executors: bool = False, **overrides: Any
    ) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
        application = app or create_app(make_settings(**overrides), executors=executors)
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield application, client

    return make


@pytest.fixture
def make_auth_client(
    make_client: Callable[..., Any], make_settings: Callable[..., Settings]
) -> Callable[..., Any]:
    """Like `make_client`, with a fixed JWT secret and cheap password hashing by default.

    `async with make_auth_client(config=security_config(...), **settings) as (app, client)`.
    """
    from devteam.settings import AppConfig
    from tests.auth import JWT_SECRET, security_config

    def make(
        config: AppConfig | None = None,
        *,
        executors: bool = False,
        agents: Any = None,
        **overrides: Any,
    ) -> Any:
        overrides.setdefault("jwt_secret", JWT_SECRET)
        settings = make_settings(**overrides)
        app = create_app(settings, config or security_config(), executors=executors, agents=agents)
        return make_client(app)

    return make
