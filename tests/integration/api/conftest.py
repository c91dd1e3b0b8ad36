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
    """`async with make_client(**settings) as (app, client)`: the app with its lifespan."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def make(
        app: FastAPI | None = None, **overrides: Any
    ) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
        application = app or create_app(make_settings(**overrides))
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield application, client

    return make
