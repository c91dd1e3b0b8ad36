"""Authenticating a WebSocket handshake, as the hub does: header or `access_token` query."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI, WebSocket
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from devteam.api.security import authenticate_websocket
from devteam.app import create_app
from devteam.domain.enums import Role
from devteam.domain.errors import RateLimited, Unauthorized
from devteam.settings import Settings
from devteam.settings.security import RateLimitsConfig
from tests.auth import JWT_SECRET, PASSWORD, add_user, security_config


def app_with_socket(settings: Settings) -> FastAPI:
    limits = RateLimitsConfig(ws_connect_per_user="3/minute")
    app = create_app(settings, security_config(rate_limits=limits), executors=False)

    @app.websocket("/test/ws")
    async def socket(websocket: WebSocket) -> None:
        try:
            caller = await authenticate_websocket(websocket, app.state.services.security)
        except Unauthorized:
            await websocket.close(code=4401)
            return
        except RateLimited:
            await websocket.close(code=4429)
            return
        await websocket.accept()
        await websocket.send_json({"username": caller.username})
        await websocket.close()

    return app


@pytest.fixture
def client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    app = app_with_socket(make_settings(jwt_secret=JWT_SECRET))
    with TestClient(app) as test_client:
        yield test_client


def token_of(client: TestClient, role: Role = Role.VIEWER) -> tuple[str, Any]:
    app: Any = client.app
    user = client.portal.call(add_user, app, role)  # type: ignore[union-attr]
    response = client.post(
        "/api/v1/auth/token", data={"username": user.username, "password": PASSWORD}
    )
    return response.json()["access_token"], user


def close_code(client: TestClient, url: str, headers: dict[str, str] | None = None) -> int:
    with (
        pytest.raises(WebSocketDisconnect) as caught,
        client.websocket_connect(url, headers=dict(headers or {})),
    ):
        pass
    return caught.value.code


def test_header_and_query_parameter(client: TestClient) -> None:
    token, user = token_of(client)
    with client.websocket_connect(
        "/test/ws", headers={"Authorization": f"Bearer {token}"}
    ) as socket:
        assert socket.receive_json() == {"username": user.username}
    with client.websocket_connect(f"/test/ws?access_token={token}") as socket:
        assert socket.receive_json() == {"username": user.username}


def test_bad_or_missing_token_closes_4401(client: TestClient) -> None:
    token, _ = token_of(client)
    assert close_code(client, "/test/ws") == 4401
    assert close_code(client, "/test/ws?access_token=garbage") == 4401
    assert close_code(client, "/test/ws", {"Authorization": f"Bearer {token}x"}) == 4401
    client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert close_code(client, f"/test/ws?access_token={token}") == 4401


def test_connections_are_limited_per_user(client: TestClient) -> None:
    token, _ = token_of(client)
    for _ in range(3):
        with client.websocket_connect(f"/test/ws?access_token={token}") as socket:
            socket.receive_json()
    assert close_code(client, f"/test/ws?access_token={token}") == 4429
