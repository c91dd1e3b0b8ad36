"""Start-up refuses unusable token keys; CORS, headers and body limits hold on auth routes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from devteam.app import create_app
from devteam.domain.enums import Role
from devteam.domain.errors import ConfigError
from devteam.settings import Settings
from tests.auth import add_user, assert_error, bearer, login, security_config


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        (None, "environment: DEVTEAM_JWT_SECRET: required in production"),
        ("too-short-secret", "environment: DEVTEAM_JWT_SECRET: too short for HS256: 16 bytes"),
    ],
    ids=["missing", "short"],
)
def test_production_refuses_to_start_without_a_good_secret(
    make_settings: Callable[..., Settings], secret: str | None, expected: str
) -> None:
    settings = make_settings(env="production", jwt_secret=secret)
    with pytest.raises(ConfigError) as caught:
        create_app(settings)
    assert caught.value.message.startswith(expected)
    assert "\n" not in caught.value.message


async def test_development_generates_a_secret(
    make_client: Callable[..., Any],
    make_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(make_settings(jwt_secret=None), security_config(), executors=False)
    with caplog.at_level(logging.WARNING):
        async with make_client(app) as (_, client):
            user = await add_user(app, Role.VIEWER)
            tokens = await login(client, user.username)
            me = await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert any("DEVTEAM_JWT_SECRET is not set" in r.getMessage() for r in caplog.records)


async def test_cors_is_closed_by_default(make_auth_client: Callable[..., Any]) -> None:
    async with make_auth_client() as (_, client):
        preflight = await client.options(
            "/api/v1/auth/token",
            headers={
                "Origin": "https://evil.example",
                "Access-Control-Request-Method": "POST",
            },
        )
        simple = await client.get("/health/live", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in simple.headers


async def test_cors_allows_configured_origins(make_auth_client: Callable[..., Any]) -> None:
    origin = "https://app.example"
    async with make_auth_client(cors_origins=[origin]) as (app, client):
        preflight = await client.options(
            "/api/v1/users/me",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "Authorization",
            },
        )
        user = await add_user(app)
        tokens = await login(client, user.username)
        me = await client.get(
            "/api/v1/users/me", headers={**bearer(tokens["access_token"]), "Origin": origin}
        )
        other = await client.get("/health/live", headers={"Origin": "https://evil.example"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin
    assert "PATCH" in preflight.headers["access-control-allow-methods"]
    assert me.headers["access-control-allow-origin"] == origin
    exposed = me.headers["access-control-expose-headers"]
    assert "RateLimit-Remaining" in exposed
    assert "Retry-After" in exposed
    assert "access-control-allow-origin" not in other.headers


async def test_auth_answers_carry_the_security_headers(
    make_auth_client: Callable[..., Any],
) -> None:
    async with make_auth_client(hsts=True) as (_, client):
        response = await client.post(
            "/api/v1/auth/token", data={"username": "nobody", "password": "whatever"}
        )
    assert_error(response, 401, "invalid_credentials")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["strict-transport-security"].startswith("max-age=")


async def test_oversize_login_form_is_refused(make_auth_client: Callable[..., Any]) -> None:
    async with make_auth_client(max_body_bytes=4096) as (_, client):
        response = await client.post(
            "/api/v1/auth/token", data={"username": "ada", "password": "x" * 10_000}
        )
    assert_error(response, 413, "payload_too_large")


async def test_openapi_documents_auth(make_auth_client: Callable[..., Any]) -> None:
    async with make_auth_client() as (_, client):
        spec = (await client.get("/openapi.json")).json()
    scheme = spec["components"]["securitySchemes"]["OAuth2"]
    assert scheme["flows"]["password"]["tokenUrl"] == "/api/v1/auth/token"
    ours = {
        (method.upper(), path): operation
        for path, operations in spec["paths"].items()
        if path.startswith(("/api/v1/auth", "/api/v1/users", "/api/v1/audit"))
        for method, operation in operations.items()
    }
    assert len(ours) == 12
    for (method, path), operation in ours.items():
        assert operation.get("summary"), (method, path)
        errors = {code: r for code, r in operation["responses"].items() if code >= "400"}
        assert errors, (method, path)
        for code, response in errors.items():
            content = response["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/ErrorOut"}, (path, code)
            assert content["examples"], (path, code)
        if (
            not path.startswith(("/api/v1/auth/token", "/api/v1/auth/refresh", "/api/v1/auth/oidc"))
            and path != "/api/v1/auth/providers"
        ):
            assert operation["security"] == [{"OAuth2": []}], (method, path)
