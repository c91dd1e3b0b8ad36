"""Every error has the shape of API.md; every response has a request id."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field

from devteam.app import create_app
from devteam.domain.errors import Conflict
from devteam.settings import Settings


class Body(BaseModel):
    name: str = Field(min_length=3)
    count: int = Field(ge=1)


def app_with_test_routes(settings: Settings) -> FastAPI:
    app = create_app(settings, executors=False)

    @app.post("/test/echo")
    async def echo(body: Body) -> Body:
        return body

    @app.get("/test/conflict")
    async def conflict() -> None:
        raise Conflict("it already exists", details=[{"id": "x"}])

    @app.get("/test/crash")
    async def crash() -> None:
        raise RuntimeError("secret internal detail password=hunter2")

    return app


@pytest.fixture
async def client(
    make_client: Callable[..., Any], make_settings: Callable[..., Settings]
) -> AsyncIterator[Any]:
    app = app_with_test_routes(make_settings(max_body_bytes=2048))
    async with make_client(app) as (_, http):
        yield http


def assert_error_shape(body: dict[str, Any], code: str) -> None:
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == code
    assert error["message"]
    assert isinstance(error["details"], list)
    assert error["request_id"]


async def test_unknown_route_is_not_found(client: Any) -> None:
    response = await client.get("/api/v1/nowhere")
    assert response.status_code == 404
    assert_error_shape(response.json(), "not_found")
    assert response.json()["error"]["request_id"] == response.headers["x-request-id"]


async def test_wrong_method(client: Any) -> None:
    response = await client.delete("/health/live")
    assert response.status_code == 405
    assert_error_shape(response.json(), "method_not_allowed")
    assert "GET" in response.headers["allow"]


async def test_validation_errors_name_the_field(client: Any) -> None:
    response = await client.post("/test/echo", json={"name": "Zq", "count": 0})
    assert response.status_code == 422
    body = response.json()
    assert_error_shape(body, "validation_error")
    fields = {d["field"] for d in body["error"]["details"]}
    assert fields == {"name", "count"}
    assert "Zq" not in response.text  # inputs are not echoed back


async def test_malformed_json_is_a_validation_error(client: Any) -> None:
    response = await client.post(
        "/test/echo", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert_error_shape(response.json(), "validation_error")


async def test_domain_errors_keep_their_code(client: Any) -> None:
    response = await client.get("/test/conflict")
    assert response.status_code == 409
    assert_error_shape(response.json(), "conflict")
    assert response.json()["error"]["details"] == [{"id": "x"}]


async def test_unexpected_errors_reveal_nothing(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = await client.get("/test/crash", headers={"X-Request-ID": "crash-1"})
    assert response.status_code == 500
    assert_error_shape(response.json(), "internal_error")
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    assert response.headers["x-request-id"] == "crash-1"
    assert response.json()["error"]["request_id"] == "crash-1"
    assert any(r.exc_info for r in caplog.records), "the traceback is logged"


async def test_declared_oversize_body_is_refused(client: Any) -> None:
    response = await client.post("/test/echo", content=b"x" * 4096)
    assert response.status_code == 413
    assert_error_shape(response.json(), "payload_too_large")


async def test_streamed_oversize_body_is_refused(client: Any) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b'{"name": "' + b"x" * 500

    response = await client.post(
        "/test/echo", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert_error_shape(response.json(), "payload_too_large")


async def test_request_ids_are_echoed_or_made(client: Any) -> None:
    given = await client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = await client.get("/health/live")
    assert len(made.headers["x-request-id"]) == 32
    unsafe = await client.get("/health/live", headers={"X-Request-ID": "bad id\twith spaces"})
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"


async def test_security_headers(client: Any) -> None:
    response = await client.get("/health/live")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "strict-transport-security" not in response.headers


async def test_hsts_when_configured(make_client: Callable[..., Any]) -> None:
    async with make_client(hsts=True) as (_, client):
        response = await client.get("/health/live")
    assert response.headers["strict-transport-security"].startswith("max-age=")


async def test_ready_when_database_and_broker_answer(make_client: Callable[..., Any]) -> None:
    async with make_client() as (_, client):
        response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


async def test_not_ready_names_the_failing_check(make_client: Callable[..., Any]) -> None:
    # Nothing listens on port 1: the broker check fails, the database one passes.
    async with make_client(redis_url="redis://127.0.0.1:1/0") as (_, client):
        response = await client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"] != "ok"


async def test_live(make_client: Callable[..., Any]) -> None:
    async with make_client() as (_, client):
        response = await client.get("/health/live")
    assert response.json() == {"status": "ok"}
