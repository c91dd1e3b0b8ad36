"""Rate limits on the API: login per IP and per username, every request per user.

On Redis, two app instances (as two API replicas would) share one limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from devteam.app import create_app
from devteam.domain.enums import Role
from devteam.domain.errors import RateLimited
from devteam.settings import Settings
from devteam.settings.security import RateLimitsConfig
from tests.auth import JWT_SECRET, add_user, assert_error, bearer, login, security_config

LIMITS = RateLimitsConfig(
    api_per_user="5/minute",
    login_per_ip="3/minute",
    login_per_username="4/minute",
    ws_connect_per_user="2/minute",
)


@asynccontextmanager
async def client_from(app: FastAPI, ip: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app already started, connecting from `ip`."""
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def attempt(client: httpx.AsyncClient, username: str, password: str = "wrong") -> int:
    response = await client.post(
        "/api/v1/auth/token", data={"username": username, "password": password}
    )
    return response.status_code


def assert_rate_limited(response: httpx.Response, limit: int) -> None:
    assert_error(response, 429, "rate_limited")
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert response.headers["ratelimit-limit"] == str(limit)
    assert response.headers["ratelimit-remaining"] == "0"
    assert 0 <= int(response.headers["ratelimit-reset"]) <= 60


async def test_login_is_limited_per_ip(make_auth_client: Callable[..., Any]) -> None:
    async with make_auth_client(config=security_config(rate_limits=LIMITS)) as (app, client):
        await add_user(app, Role.DEVELOPER, "ada")
        statuses = [await attempt(client, name) for name in ("ada", "bob", "carl")]
        assert statuses == [401, 401, 401]
        refused = await client.post(
            "/api/v1/auth/token", data={"username": "dora", "password": "x"}
        )
        assert_rate_limited(refused, 3)
        # The right password does not get through either, from this IP; another IP is fine.
        assert await attempt(client, "ada", "correct horse battery staple") == 429
        async with client_from(app, "10.0.0.2") as elsewhere:
            assert (await login(elsewhere, "ada"))["access_token"]


async def test_login_is_limited_per_username(make_auth_client: Callable[..., Any]) -> None:
    async with make_auth_client(config=security_config(rate_limits=LIMITS)) as (app, _):
        await add_user(app, Role.DEVELOPER, "ada")
        statuses = []
        for n in range(5):
            async with client_from(app, f"10.0.1.{n}") as client:
                statuses.append(await attempt(client, "ADA" if n % 2 else "ada"))
        # Case does not make another username.
        assert statuses == [401, 401, 401, 401, 429]
        async with client_from(app, "10.0.2.1") as client:
            assert await attempt(client, "bob") == 401


async def test_api_is_limited_per_user(make_auth_client: Callable[..., Any]) -> None:
    async with make_auth_client(config=security_config(rate_limits=LIMITS)) as (app, client):
        ada = await add_user(app, Role.DEVELOPER)
        bob = await add_user(app, Role.DEVELOPER)
        ada_headers = bearer((await login(client, ada.username))["access_token"])
        bob_headers = bearer((await login(client, bob.username))["access_token"])
        remaining = []
        for _ in range(5):
            response = await client.get("/api/v1/users/me", headers=ada_headers)
            assert response.status_code == 200
            assert response.headers["ratelimit-limit"] == "5"
            remaining.append(int(response.headers["ratelimit-remaining"]))
        assert remaining == [4, 3, 2, 1, 0]
        assert_rate_limited(await client.get("/api/v1/users/me", headers=ada_headers), 5)
        assert (await client.get("/api/v1/users/me", headers=bob_headers)).status_code == 200


async def test_websocket_connects_are_limited_per_user(
    make_auth_client: Callable[..., Any],
) -> None:
    async with make_auth_client(config=security_config(rate_limits=LIMITS)) as (app, client):
        user = await add_user(app)
        token = (await login(client, user.username))["access_token"]
        security = app.state.services.security
        caller = await security.authenticate(token)
        await security.check_ws_connect(caller)
        await security.check_ws_connect(caller)
        with pytest.raises(RateLimited):
            await security.check_ws_connect(caller)


@pytest.mark.redis
async def test_two_instances_share_limits_on_redis(
    make_settings: Callable[..., Settings], redis_url: str, redis_prefix: str
) -> None:
    settings = make_settings(jwt_secret=JWT_SECRET, redis_url=redis_url, redis_prefix=redis_prefix)
    config = security_config(rate_limits=LIMITS)
    first = create_app(settings, config, executors=False)
    second = create_app(settings, config, executors=False)
    async with (
        first.router.lifespan_context(first),
        second.router.lifespan_context(second),
        client_from(first, "10.9.9.9") as a,
        client_from(second, "10.9.9.9") as b,
    ):
        # Login from one IP: 3 per minute across both instances.
        assert [await attempt(a, "x"), await attempt(b, "y"), await attempt(a, "z")] == [
            401,
            401,
            401,
        ]
        assert_rate_limited(
            await b.post("/api/v1/auth/token", data={"username": "w", "password": "w"}), 3
        )
        # Per user: 5 requests per minute, whichever instance answers.
        user = await add_user(first, Role.VIEWER)
        async with client_from(first, "10.9.9.10") as fresh:
            headers = bearer((await login(fresh, user.username))["access_token"])
        seen = []
        for client in (a, b, a, b, a):
            response = await client.get("/api/v1/users/me", headers=headers)
            seen.append((response.status_code, response.headers["ratelimit-remaining"]))
        assert seen == [(200, "4"), (200, "3"), (200, "2"), (200, "1"), (200, "0")]
        assert_rate_limited(await b.get("/api/v1/users/me", headers=headers), 5)
