"""Helpers for tests that need users and tokens: fast hashing, users, logins, bearer headers."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from devteam.domain.enums import Role
from devteam.domain.users import User
from devteam.services import Services
from devteam.settings import AppConfig, load_config
from devteam.settings.security import PasswordsConfig, RateLimitsConfig

REPO = Path(__file__).resolve().parent.parent

PASSWORD = "correct horse battery staple"
JWT_SECRET = "test-jwt-secret-that-is-long-enough-0123456789"

FAST_PASSWORDS = PasswordsConfig(time_cost=1, memory_cost_kib=8, parallelism=1)
"""argon2 at its cheapest, for tests that are not about hashing cost."""


def security_config(
    *,
    passwords: PasswordsConfig = FAST_PASSWORDS,
    rate_limits: RateLimitsConfig | None = None,
    **tokens: Any,
) -> AppConfig:
    """The repository's config with fast hashing and, optionally, other limits or tokens."""
    base = load_config(REPO / "config")
    update: dict[str, Any] = {"passwords": passwords}
    if rate_limits is not None:
        update["rate_limits"] = rate_limits
    if tokens:
        update["tokens"] = base.security.tokens.model_copy(update=tokens)
    return base.model_copy(update={"security": base.security.model_copy(update=update)})


def services_of(app: FastAPI) -> Services:
    services: Services = app.state.services
    return services


async def add_user(
    app: FastAPI, role: Role = Role.DEVELOPER, username: str | None = None, password: str = PASSWORD
) -> User:
    """A user created the way an admin would (audited, with a real password hash)."""
    security = services_of(app).security
    return await security.accounts.create(
        username or f"{role.value}-{uuid.uuid4().hex[:8]}",
        password,
        role,
        auditor=security.auditor,
        actor="test",
    )


async def login(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD
) -> dict[str, Any]:
    """The token answer of a successful login."""
    response = await client.post(
        "/api/v1/auth/token", data={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    """`response` is an API.md error with this status and code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details", "request_id"}
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    assert body["error"]["request_id"] == response.headers["x-request-id"]
