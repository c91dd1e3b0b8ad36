"""Rate limits on the API: reads, writes and submissions per user; logins per client IP,
failures per (username, client IP) and per username; forwarded headers from listed
proxies only.

On Redis, two app instances (as two API replicas would) share one limit.
"""

from __future__ import annotations

import uuid
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
    reads_per_user="5/minute",
    writes_per_user="5/minute",
    login_per_ip="3/minute",
    login_failures_per_client="3/minute",
    login_failures_per_username="4/minute",
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


async def test_failed_logins_per_username_from_anywhere_have_a_threshold(
    make_auth_client: Callable[..., Any],
) -> None:
    async with make_auth_client(config=security_config(rate_limits=LIMITS)) as (app, _):
        await add_user(app, Role.DEVELOPER, "ada")
        # The owner's own successful logins use no failure budget.
        for n in range(5):
            async with client_from(app, f"10.0.3.{n}") as client:
                assert (await login(client, "ada"))["access_token"]
        statuses = []
        for n in range(5):
            async with client_from(app, f"10.0.1.{n}") as client:
                statuses.append(await attempt(client, "ADA" if n % 2 else "ada"))
        # Case does not make another username; one failure from each of four places
        # reaches the per-username threshold, and then no place may try "ada".
        assert statuses == [401, 401, 401, 401, 429]
        async with client_from(app, "10.0.2.1") as client:
            assert await attempt(client, "ada", "correct horse battery staple") == 429
            assert await attempt(client, "bob") == 401


async def test_the_owner_logs_in_from_elsewhere_while_an_attackers_client_is_limited(
    make_auth_client: Callable[..., Any],
) -> None:
    limits = LIMITS.model_copy(
        update={"login_per_ip": "100/minute", "login_failures_per_username": "100/minute"}
    )
    async with make_auth_client(config=security_config(rate_limits=limits)) as (app, _):
        await add_user(app, Role.DEVELOPER, "ada")
        await add_user(app, Role.DEVELOPER, "bob")
        async with client_from(app, "10.6.6.6") as attacker, client_from(app, "10.0.0.7") as owner:
            # Thirty wrong passwords for "ada": three fail, the rest are refused.
            statuses = [await attempt(attacker, "ada") for _ in range(30)]
            assert statuses == [401] * 3 + [429] * 27
            refused = await attacker.post(
                "/api/v1/auth/token", data={"username": "ada", "password": "x"}
            )
            assert_rate_limited(refused, 3)
            # The attacker's client cannot get in even with the right password ...
            assert await attempt(attacker, "ada", "correct horse battery staple") == 429
            # ... but the owner, from their own client, can; and the attacker's client
            # still reaches other accounts (another user behind the same address).
            assert (await login(owner, "ada"))["access_token"]
            assert (await login(attacker, "bob"))["access_token"]


async def test_reads_are_limited_per_user(make_auth_client: Callable[..., Any]) -> None:
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


async def test_a_client_polling_reads_is_not_refused_while_its_writes_are(
    make_auth_client: Callable[..., Any],
) -> None:
    limits = LIMITS.model_copy(
        update={"reads_per_user": "200/minute", "writes_per_user": "3/minute"}
    )
    async with make_auth_client(config=security_config(rate_limits=limits)) as (app, client):
        user = await add_user(app, Role.DEVELOPER)
        headers = bearer((await login(client, user.username))["access_token"])
        cancel = f"/api/v1/tasks/{uuid.uuid4()}/cancel"
        writes = [(await client.post(cancel, headers=headers)).status_code for _ in range(3)]
        assert writes == [404, 404, 404]  # counted, whatever the answer
        refused = await client.post(cancel, headers=headers)
        assert_rate_limited(refused, 3)
        # A dashboard polling as fast as it can is not refused meanwhile: 100 reads.
        for n in range(100):
            response = await client.get("/api/v1/tasks", headers=headers)
            assert response.status_code == 200, response.text
            assert response.headers["ratelimit-limit"] == "200"
            assert int(response.headers["ratelimit-remaining"]) == 199 - n
        assert_rate_limited(await client.post(cancel, headers=headers), 3)


async def test_task_submissions_have_their_own_budget(make_auth_client: Callable[..., Any]) -> None:
    limits = LIMITS.model_copy(
        update={"writes_per_user": "50/minute", "task_submissions_per_user": "2/minute"}
    )
    async with make_auth_client(config=security_config(rate_limits=limits)) as (app, client):
        user = await add_user(app, Role.DEVELOPER)
        headers = bearer((await login(client, user.username))["access_token"])
        body = {"task": "Add a health endpoint to the service", "complexity": 3}
        first = await client.post("/api/v1/tasks", json=body, headers=headers)
        assert first.status_code == 202, first.text
        # The tighter of the two budgets is the one reported.
        assert (first.headers["ratelimit-limit"], first.headers["ratelimit-remaining"]) == (
            "2",
            "1",
        )
        assert (await client.post("/api/v1/tasks", json=body, headers=headers)).status_code == 202
        assert_rate_limited(await client.post("/api/v1/tasks", json=body, headers=headers), 2)
        # Other writes still have room.
        cancel = await client.post(f"/api/v1/tasks/{first.json()['id']}/cancel", headers=headers)
        assert cancel.status_code == 202, cancel.text
        assert cancel.headers["ratelimit-limit"] == "50"


async def login_from(url: str, forwarded_for: str, username: str) -> int:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.post(
            "/api/v1/auth/token",
            data={"username": username, "password": "wrong"},
            headers={"X-Forwarded-For": forwarded_for},
        )
    return response.status_code


async def audited_ips(app: FastAPI) -> list[str | None]:
    async with app.state.services.store.read() as tx:
        entries = await tx.audit.list(action="auth.login", limit=100)
    return sorted(e.client_ip or "" for e in entries)


@pytest.mark.parametrize(
    ("proxies", "trusted"),
    [
        pytest.param(None, False, id="no proxy listed"),
        pytest.param(["10.20.0.0/16"], False, id="another proxy listed"),
        pytest.param(["127.0.0.1"], True, id="this proxy listed"),
    ],
)
async def test_forwarded_headers_count_only_from_a_listed_proxy(
    make_live_server: Callable[..., Any], proxies: list[str] | None, trusted: bool
) -> None:
    overrides = {} if proxies is None else {"forwarded_allow_ips": proxies}
    config = security_config(rate_limits=LIMITS)
    async with make_live_server(config, **overrides) as server:
        # An attacker rotating X-Forwarded-For to escape the per-IP limit (3/minute).
        statuses = [await login_from(server.url, f"203.0.113.{n}", f"user{n}") for n in range(1, 5)]
        ips = await audited_ips(server.app)
    if trusted:
        assert statuses == [401, 401, 401, 401]
        assert ips == [f"203.0.113.{n}" for n in range(1, 5)]
    else:
        assert statuses == [401, 401, 401, 429]
        assert ips == ["127.0.0.1"] * 3
