"""Hostile input is a 4xx, the same on SQLite and Postgres.

NUL characters, lone surrogates, numbers JSON cannot carry, integers beyond their
column and absurd nesting are refused with `422 validation_error` (WebSocket:
`bad_request`) before anything is stored, wherever they come in.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from devteam.domain.enums import Role
from tests.auth import FAST_PASSWORDS, add_user, assert_error, bearer, login, security_config
from tests.live import receive, send

TASK = "Add a /healthz endpoint with a test"


def task_body(**fields: Any) -> dict[str, Any]:
    return {"task": TASK, "complexity": 3, **fields}


def json_headers(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Content-Type": "application/json"}


def cursor_of(position: dict[str, Any]) -> str:
    raw = json.dumps(position).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def assert_refused(response: httpx.Response, field: str) -> None:
    assert_error(response, 422, "validation_error")
    fields = [d["field"] for d in response.json()["error"]["details"]]
    assert field in fields, response.text
    assert "\x00" not in response.text, "the input is not echoed back"


async def admin_headers(app: Any, client: httpx.AsyncClient) -> dict[str, str]:
    admin = await add_user(app, Role.ADMIN)
    return bearer((await login(client, admin.username))["access_token"])


NUL_BODIES = [
    pytest.param(task_body(task=f"{TASK}\x00"), "task", id="task"),
    pytest.param(task_body(task_type="feat\x00ure"), "task_type", id="task_type"),
    pytest.param(task_body(metadata={"ticket\x00": "OPS-42"}), "metadata.ticket\\x00", id="key"),
    pytest.param(task_body(metadata={"a": {"b": ["ok", "x\x00"]}}), "metadata.a.b.1", id="value"),
    pytest.param(
        task_body(
            subtasks=[
                {"key": "one", "agent_type": "research", "task": f"{TASK}\x00", "complexity": 1}
            ]
        ),
        "subtasks.0.task",
        id="subtask",
    ),
]


@pytest.mark.parametrize(("body", "field"), NUL_BODIES)
async def test_nul_anywhere_in_a_task_is_refused(
    database_url: str, make_auth_client: Callable[..., Any], body: dict[str, Any], field: str
) -> None:
    async with make_auth_client(database_url=database_url) as (app, client):
        headers = await admin_headers(app, client)
        response = await client.post("/api/v1/tasks", json=body, headers=headers)
        listed = (await client.get("/api/v1/tasks", headers=headers)).json()
    assert_refused(response, field)
    assert listed["items"] == []


BAD_JSON = [
    pytest.param('{"metadata": {"k": "\\ud800"}}', "metadata.k", id="lone-surrogate-value"),
    pytest.param('{"metadata": {"\\udfff": 1}}', "metadata.\\udfff", id="lone-surrogate-key"),
    pytest.param('{"metadata": {"k": 1e400}}', "metadata.k", id="overflow"),
    pytest.param('{"metadata": {"k": [NaN]}}', "metadata.k.0", id="nan"),
    pytest.param('{"metadata": {"k": -Infinity}}', "metadata.k", id="minus-infinity"),
    pytest.param('{"metadata": {"k": Infinity}}', "metadata.k", id="infinity"),
    pytest.param('{"metadata": {"k": ' + "[" * 70 + "]" * 70 + "}}", "metadata", id="deep"),
]


@pytest.mark.parametrize(("fields", "field"), BAD_JSON)
async def test_json_no_backend_stores_faithfully_is_refused(
    database_url: str, make_auth_client: Callable[..., Any], fields: str, field: str
) -> None:
    body = f'{{"task": "{TASK}", "complexity": 3, {fields[1:-1]}}}'
    async with make_auth_client(database_url=database_url) as (app, client):
        headers = await admin_headers(app, client)
        # Posted as written: json= would refuse NaN and escape the rest differently.
        response = await client.post(
            "/api/v1/tasks", content=body.encode(), headers=json_headers(headers)
        )
        listed = (await client.get("/api/v1/tasks", headers=headers)).json()
    assert_refused(response, field)
    assert listed["items"] == []


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32-be"])
async def test_hostile_json_is_refused_in_any_encoding_json_allows(
    make_auth_client: Callable[..., Any], encoding: str
) -> None:
    # Most bodies are let through after a look at their bytes; one in UTF-16 or
    # UTF-32 (which JSON parsers accept too) must not slip past that look.
    body = f'{{"task": "{TASK}", "complexity": 3, "metadata": {{"k": "x\\u0000"}}}}'
    async with make_auth_client() as (app, client):
        headers = await admin_headers(app, client)
        response = await client.post(
            "/api/v1/tasks", content=body.encode(encoding), headers=json_headers(headers)
        )
    assert_refused(response, "metadata.k")


async def test_login_form_with_nul_is_refused_before_anything_is_recorded(
    database_url: str, make_auth_client: Callable[..., Any]
) -> None:
    async with make_auth_client(database_url=database_url) as (app, client):
        headers = await admin_headers(app, client)
        urlencoded = await client.post(
            "/api/v1/auth/token", data={"username": "ad\x00min", "password": "x" * 12}
        )
        multipart = await client.post(
            "/api/v1/auth/token",
            data={"username": "admin", "password": "pass\x00word-long"},
            files={"unused": ("a.txt", b"")},
        )
        audit = (await client.get("/api/v1/audit?action=auth.login", headers=headers)).json()
    assert_refused(urlencoded, "username")
    assert_error(multipart, 422, "validation_error")
    assert len(audit["items"]) == 1, "only the admin's own login is in the audit log"


@pytest.mark.parametrize(
    ("url", "field"),
    [
        pytest.param("/api/v1/audit?actor=ad%00min", "actor", id="audit-actor"),
        pytest.param("/api/v1/audit?action=auth.login%00", "action", id="audit-action"),
        pytest.param("/api/v1/users/me?unknown%00=1", "unknown\\x00", id="undeclared-name"),
        pytest.param("/api/v1/users/me%00", "", id="path"),
    ],
)
async def test_nul_in_the_url_is_refused(
    database_url: str, make_auth_client: Callable[..., Any], url: str, field: str
) -> None:
    async with make_auth_client(database_url=database_url) as (app, client):
        response = await client.get(url, headers=await admin_headers(app, client))
    assert_refused(response, field)


async def test_nul_in_a_header_is_refused(
    database_url: str, make_auth_client: Callable[..., Any]
) -> None:
    async with make_auth_client(database_url=database_url) as (app, client):
        headers = await admin_headers(app, client)
        response = await client.post(
            "/api/v1/tasks", json=task_body(), headers={**headers, "Idempotency-Key": "k\x00"}
        )
        listed = (await client.get("/api/v1/tasks", headers=headers)).json()
    assert_refused(response, "idempotency-key")
    assert listed["items"] == []


async def test_integers_beyond_their_column_are_refused(
    database_url: str, make_auth_client: Callable[..., Any]
) -> None:
    async with make_auth_client(database_url=database_url) as (app, client):
        headers = await admin_headers(app, client)
        task_id = (await client.post("/api/v1/tasks", json=task_body(), headers=headers)).json()[
            "id"
        ]
        events = f"/api/v1/tasks/{task_id}/events"
        answers = {
            "after 2^31": await client.get(f"{events}?after={2**31}", headers=headers),
            "after 2^63": await client.get(f"{events}?after={2**63}", headers=headers),
            "max_tokens 2^63": await client.post(
                "/api/v1/tasks", json=task_body(budget={"max_tokens": 2**63}), headers=headers
            ),
            "audit cursor 2^63": await client.get(
                "/api/v1/audit", params={"cursor": cursor_of({"before_id": 2**63})}, headers=headers
            ),
            "users cursor NUL": await client.get(
                "/api/v1/users", params={"cursor": cursor_of({"after": "a\x00"})}, headers=headers
            ),
            "tasks cursor naive time": await client.get(
                "/api/v1/tasks",
                params={"cursor": cursor_of({"created_at": "2025-01-01T00:00:00", "id": task_id})},
                headers=headers,
            ),
            "tasks cursor time overflow": await client.get(
                "/api/v1/tasks",
                params={
                    "cursor": cursor_of({"created_at": "0001-01-01T00:00:00+14:00", "id": task_id})
                },
                headers=headers,
            ),
        }
        last = await client.get(f"{events}?after={2**31 - 1}", headers=headers)
    fields = {
        "after 2^31": "after",
        "after 2^63": "after",
        "max_tokens 2^63": "budget.max_tokens",
    }
    for name, response in answers.items():
        assert_refused(response, fields.get(name, "cursor"))
    assert last.status_code == 200
    assert last.json()["items"] == []


async def test_websocket_refuses_hostile_messages_and_keeps_the_connection(
    database_url: str, make_live_server: Callable[..., Any]
) -> None:
    async with make_live_server(database_url=database_url) as server:
        _, token = await server.login_new_user()
        async with server.http(token) as http:
            task_id = (await http.post("/api/v1/tasks", json=task_body())).json()["id"]
        cases: list[tuple[str, str]] = [
            (json.dumps({"type": "subscribe", "task_id": task_id, "after": 2**63}), "after: "),
            (json.dumps({"type": "subscribe", "task_id": task_id, "after": 2**31}), "after: "),
            ("[" * 10_000 + "]" * 10_000, "message: nested deeper than"),
            (f'{{"type": "subscribe", "task_id": "{task_id}", "after": NaN}}', "message.after: "),
            ('{"type": "ping\\u0000"}', "message.type: must not contain the NUL"),
        ]
        async with server.websocket(token) as socket:
            for raw, message in cases:
                await socket.send(raw)
                error = await receive(socket)
                assert error["type"] == "error", (raw[:80], error)
                assert error["code"] == "bad_request", (raw[:80], error)
                assert error["message"].startswith(message), (raw[:80], error)
            await send(socket, type="ping")
            assert await receive(socket) == {"type": "pong"}


async def test_method_not_allowed_lists_every_allowed_method(
    make_auth_client: Callable[..., Any],
) -> None:
    async with make_auth_client() as (_, client):
        tasks = await client.put("/api/v1/tasks")
        user = await client.delete(f"/api/v1/users/{uuid.uuid4()}")
        # /users/me is not a /users/{user_id}: it has no PATCH.
        me = await client.patch("/api/v1/users/me", json={"role": "admin"})
    assert_error(tasks, 405, "method_not_allowed")
    assert tasks.headers["allow"] == "GET, POST"
    assert user.headers["allow"] == "GET, PATCH"
    assert_error(me, 405, "method_not_allowed")
    assert me.headers["allow"] == "GET"


async def test_openapi_documents_400_422_and_the_password_rules(
    make_auth_client: Callable[..., Any],
) -> None:
    passwords = FAST_PASSWORDS.model_copy(update={"min_length": 14, "max_length": 99})
    async with make_auth_client(config=security_config(passwords=passwords)) as (_, client):
        spec = (await client.get("/openapi.json")).json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "422" in responses, f"{method} {path}"
            assert ("400" in responses) == ("requestBody" in operation), f"{method} {path}"
    bad_body = spec["paths"]["/api/v1/tasks"]["post"]["responses"]["400"]
    example = next(iter(bad_body["content"]["application/json"]["examples"].values()))
    assert example["value"]["error"]["code"] == "bad_request"
    password = spec["components"]["schemas"]["UserCreate"]["properties"]["password"]
    assert (password["minLength"], password["maxLength"]) == (14, 99)


async def test_user_update_takes_what_its_schema_says(make_auth_client: Callable[..., Any]) -> None:
    async with make_auth_client() as (app, client):
        headers = await admin_headers(app, client)
        user = await add_user(app)
        number = await client.patch(
            f"/api/v1/users/{user.id}", json={"is_active": 0}, headers=headers
        )
        nulls = await client.patch(
            f"/api/v1/users/{user.id}", json={"is_active": None, "role": "viewer"}, headers=headers
        )
        spec = (await client.get("/openapi.json")).json()
        still = await client.get(f"/api/v1/users/{user.id}", headers=headers)
    for refused in (number, nulls):
        assert_error(refused, 422, "validation_error")
        fields = {d["field"].split(".")[0] for d in refused.json()["error"]["details"]}
        assert fields == {"is_active"}, refused.text
    assert still.json()["is_active"] is True
    assert still.json()["role"] == "developer"
    update = spec["components"]["schemas"]["UserUpdate"]
    assert update["minProperties"] == 1
    assert update["properties"]["is_active"] == {"type": "boolean", "title": "Is Active"} | {
        k: v for k, v in update["properties"]["is_active"].items() if k == "description"
    }
