"""Nothing a client sends as a secret, and no token we issue, reaches a log line."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from typing import Any, Literal

import pytest

from devteam.domain.enums import Role
from devteam.observability.logging import configure_logging
from tests.auth import add_user, bearer

SECRET_PASSWORD = "Zebra-Quartz-Lantern-8841"
WRONG_PASSWORD = "Otter-Velvet-Compass-1207"


@pytest.fixture
def captured_logs(request: pytest.FixtureRequest) -> Iterator[Callable[[], str]]:
    """Every line, from every logger at every level, as the service renders it."""
    stream = io.StringIO()
    fmt: Literal["json", "console"] = request.param
    configure_logging(level="DEBUG", fmt=fmt, stream=stream)
    try:
        yield stream.getvalue
    finally:
        configure_logging(level="INFO", fmt="console")


def secret_parts(token: str) -> list[str]:
    """The token and its payload and signature (the header is the same for every token)."""
    _, payload, signature = token.split(".")
    return [token, payload, signature]


@pytest.mark.parametrize("captured_logs", ["json", "console"], indirect=True)
async def test_login_refresh_and_failed_login_log_no_secret(
    captured_logs: Callable[[], str], make_auth_client: Callable[..., Any]
) -> None:
    async with make_auth_client() as (app, client):
        await add_user(app, Role.DEVELOPER, "ada", password=SECRET_PASSWORD)
        login = await client.post(
            "/api/v1/auth/token", data={"username": "ada", "password": SECRET_PASSWORD}
        )
        first = login.json()
        refreshed = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
        )
        second = refreshed.json()
        failed = await client.post(
            "/api/v1/auth/token", data={"username": "ada", "password": WRONG_PASSWORD}
        )
        # Misuses that make the service log a refusal: reuse and a refresh token as access.
        reuse = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
        )
        misuse = await client.get("/api/v1/users/me", headers=bearer(second["refresh_token"]))
        # uvicorn logs a WebSocket handshake with its query string, where browsers put the token.
        logging.getLogger("uvicorn.error").info(
            '%s - "WebSocket %s" [accepted]',
            "127.0.0.1:50000",
            f"/api/v1/ws?access_token={second['access_token']}",
        )
    assert (login.status_code, refreshed.status_code, failed.status_code) == (200, 200, 401)
    assert (reuse.status_code, misuse.status_code) == (401, 401)

    logs = captured_logs()
    # The capture works: the requests and the audit events are in it.
    assert "/api/v1/auth/token" in logs
    assert "auth.login" in logs
    assert "auth.token_reuse" in logs
    assert "/api/v1/ws?access_token=" in logs
    secrets = [SECRET_PASSWORD, WRONG_PASSWORD]
    for pair in (first, second):
        secrets += secret_parts(pair["access_token"]) + secret_parts(pair["refresh_token"])
    leaked = [s for s in secrets if s in logs]
    assert not leaked, f"{len(leaked)} secrets in the logs"
