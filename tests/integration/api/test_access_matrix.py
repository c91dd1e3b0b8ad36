"""Who may call what: every protected route x every role x whose object, with the exact status.

One row per route and target; one column per role, plus a caller with no token.
`whose` says which object the `{...}` placeholders of the path point at:

- `-`       the route has no object;
- `own`     an object of the caller;
- `other`   an object of another user (a developer);
- `missing` an id that exists nowhere.

Method `WS` is a subscription on the WebSocket `/api/v1/ws`; its "status" is 200 for
`subscribed`, 404 for a `not_found` error and 401 for a close with 4401.

A caller that may not read an object gets 404, exactly as for a missing one; 403 is
only for a kind of request the role may not make at all. To add routes (tasks,
approvals, ...), add rows here and their objects in `World.ids`.

`POST /api/v1/auth/token` and `/auth/refresh` take no access token and are tested
in test_auth.py.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from devteam.domain.enums import Role, TaskStatus
from devteam.domain.users import User
from tests.auth import add_user, bearer, login
from tests.factories import create_root_task

S = TaskStatus

ANONYMOUS = "anonymous"
CALLERS = [*(role.value for role in Role), ANONYMOUS]

# fmt: off
#  method   path                          whose      admin operator developer viewer anonymous
MATRIX: list[tuple[str, str, str, int, int, int, int, int]] = [
    ("GET",   "/api/v1/users/me",           "-",       200,  200,     200,      200,   401),
    ("GET",   "/api/v1/users",              "-",       200,  403,     403,      403,   401),
    ("POST",  "/api/v1/users",              "-",       201,  403,     403,      403,   401),
    ("GET",   "/api/v1/users/{user_id}",    "own",     200,  200,     200,      200,   401),
    ("GET",   "/api/v1/users/{user_id}",    "other",   200,  404,     404,      404,   401),
    ("GET",   "/api/v1/users/{user_id}",    "missing", 404,  404,     404,      404,   401),
    ("PATCH", "/api/v1/users/{user_id}",    "own",     200,  403,     403,      403,   401),
    ("PATCH", "/api/v1/users/{user_id}",    "other",   200,  403,     403,      403,   401),
    ("PATCH", "/api/v1/users/{user_id}",    "missing", 404,  403,     403,      403,   401),
    ("GET",   "/api/v1/audit",              "-",       200,  403,     403,      403,   401),
    ("GET",   "/api/v1/mcp/servers",        "-",       200,  200,     403,      403,   401),
    ("POST",  "/api/v1/tasks",              "-",       202,  202,     202,      403,   401),
    ("GET",   "/api/v1/tasks",              "-",       200,  200,     200,      200,   401),
    ("GET",   "/api/v1/tasks/{task_id}",    "own",     200,  200,     200,      200,   401),
    ("GET",   "/api/v1/tasks/{task_id}",    "other",   200,  200,     404,      404,   401),
    ("GET",   "/api/v1/tasks/{task_id}",    "missing", 404,  404,     404,      404,   401),
    ("GET",   "/api/v1/tasks/{task_id}/events", "own", 200,  200,     200,      200,   401),
    ("GET",   "/api/v1/tasks/{task_id}/events", "other", 200, 200,    404,      404,   401),
    ("GET",   "/api/v1/tasks/{task_id}/events", "missing", 404, 404,  404,      404,   401),
    ("WS",    "subscribe {task_id}",        "own",     200,  200,     200,      200,   401),
    ("WS",    "subscribe {task_id}",        "other",   200,  200,     404,      404,   401),
    ("WS",    "subscribe {task_id}",        "missing", 404,  404,     404,      404,   401),
    ("POST",  "/api/v1/tasks/{awaiting_id}/approve", "own", 200, 200, 200,      403,   401),
    ("POST",  "/api/v1/tasks/{awaiting_id}/approve", "other", 200, 403, 404,    404,   401),
    ("POST",  "/api/v1/tasks/{awaiting_id}/approve", "missing", 404, 404, 404,  404,   401),
    ("POST",  "/api/v1/tasks/{task_id}/cancel", "own", 202,  202,     202,      403,   401),
    ("POST",  "/api/v1/tasks/{task_id}/cancel", "other", 202, 202,    404,      404,   401),
    ("POST",  "/api/v1/tasks/{task_id}/cancel", "missing", 404, 404,  404,      404,   401),
    ("GET",   "/api/v1/agents",             "-",       200,  200,     200,      200,   401),
    ("GET",   "/api/v1/team-leader/rules",  "-",       200,  200,     403,      403,   401),
    ("POST",  "/api/v1/team-leader/rules/reload", "-", 200,  200,     403,      403,   401),
    ("GET",   "/api/v1/projects",           "-",       200,  200,     200,      200,   401),
    ("POST",  "/api/v1/projects",           "-",       202,  202,     403,      403,   401),
    ("GET",   "/api/v1/projects/nowhere",   "-",       404,  404,     404,      404,   401),
    ("POST",  "/api/v1/projects/nowhere/refresh", "-", 404,  404,     403,      403,   401),
    ("DELETE", "/api/v1/projects/nowhere",  "-",       404,  404,     403,      403,   401),
    # Last: it ends the caller's session.
    ("POST",  "/api/v1/auth/logout",        "-",       204,  204,     204,      204,   401),
]
# fmt: on


def body_for(method: str, path: str, caller_role: str) -> dict[str, Any] | None:
    """A valid body for the route, so the status depends on who asks and nothing else."""
    if (method, path) == ("POST", "/api/v1/users"):
        return {
            "username": f"new-{uuid.uuid4().hex[:8]}",
            "password": "a long enough password",
            "role": "viewer",
        }
    if (method, path) == ("PATCH", "/api/v1/users/{user_id}"):
        # Keeps the caller's own role (an admin stays admin); demotes `other` to viewer.
        return {"role": caller_role if caller_role != ANONYMOUS else "viewer"}
    if (method, path) == ("POST", "/api/v1/tasks"):
        return {"task": "Add a health endpoint to the service", "complexity": 3}
    if path.endswith("/approve"):
        return {"approved": True}
    if (method, path) == ("POST", "/api/v1/projects"):
        # Nothing answers there: the clone fails in the background, after the 202.
        return {"name": "shop", "git_url": "git://127.0.0.1:9/shop.git"}
    return None


@dataclass
class World:
    """The caller, another user, and the ids each `whose` resolves to."""

    caller: User | None
    other: User
    ids: dict[str, dict[str, str]] = field(default_factory=dict)

    def path(self, template: str, whose: str) -> str:
        if whose == "-":
            return template
        return template.format(**{name: ids[whose] for name, ids in self.ids.items()})


async def build_world(app: FastAPI, caller_role: str) -> World:
    other = await add_user(app, Role.DEVELOPER, "other-user")
    caller = None if caller_role == ANONYMOUS else await add_user(app, Role(caller_role))
    own_id = str(caller.id) if caller else str(uuid.uuid4())
    world = World(caller=caller, other=other)
    world.ids["user_id"] = {"own": own_id, "other": str(other.id), "missing": str(uuid.uuid4())}
    store = app.state.services.store
    for name, status in (("task_id", S.PENDING), ("awaiting_id", S.AWAITING_APPROVAL)):
        theirs = await create_root_task(store, other, status=status)
        mine = await create_root_task(store, caller, status=status) if caller else None
        world.ids[name] = {
            "own": str(mine.id) if mine else str(uuid.uuid4()),
            "other": str(theirs.id),
            "missing": str(uuid.uuid4()),
        }
    return world


def cases_for(caller: str) -> list[tuple[str, str, str, int]]:
    column = 3 + CALLERS.index(caller)
    return [(row[0], row[1], row[2], int(row[column])) for row in MATRIX]


@pytest.mark.parametrize("caller", CALLERS)
async def test_access_matrix(
    caller: str, database_url: str, make_auth_client: Callable[..., Any]
) -> None:
    async with make_auth_client(database_url=database_url) as (app, client):
        world = await build_world(app, caller)
        headers: dict[str, str] = {}
        if world.caller is not None:
            headers = bearer((await login(client, world.caller.username))["access_token"])
        mismatches = []
        for method, template, whose, expected in cases_for(caller):
            if method == "WS":
                task_id = world.path(template, whose).removeprefix("subscribe ")
                status, detail = await subscribe_status(app, headers, task_id)
                if status != expected:
                    mismatches.append(
                        f"WS {template} ({whose}) as {caller}: expected {expected}, got {detail}"
                    )
                continue
            response = await client.request(
                method,
                world.path(template, whose),
                json=body_for(method, template, caller),
                headers=headers,
            )
            if response.status_code != expected:
                mismatches.append(
                    f"{method} {template} ({whose}) as {caller}: "
                    f"expected {expected}, got {response.status_code} {response.text[:200]}"
                )
            elif expected >= 400:
                check_error(response, expected)
        assert not mismatches, "\n".join(mismatches)


async def subscribe_status(app: FastAPI, headers: dict[str, str], task_id: str) -> tuple[int, str]:
    """Subscribe to `task_id` over the app's WebSocket route (in process, plain ASGI)."""
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": "/api/v1/ws",
        "raw_path": b"/api/v1/ws",
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "subprotocols": [],
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
    }
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outgoing: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await incoming.put({"type": "websocket.connect"})
    subscribe = {"type": "subscribe", "task_id": task_id, "after": 0}
    await incoming.put({"type": "websocket.receive", "text": json.dumps(subscribe)})
    running = asyncio.create_task(app(scope, incoming.get, outgoing.put))
    try:
        async with asyncio.timeout(10):
            while True:
                message = await outgoing.get()
                if message["type"] == "websocket.close":
                    return (401 if message["code"] == 4401 else 0), f"close {message['code']}"
                if message["type"] == "websocket.send":
                    answer = json.loads(message["text"])
                    if answer["type"] == "subscribed":
                        return 200, "subscribed"
                    if answer.get("code") == "not_found":
                        return 404, "not_found"
                    return 0, str(answer)
    finally:
        await incoming.put({"type": "websocket.disconnect", "code": 1000})
        await running


def check_error(response: httpx.Response, status: int) -> None:
    codes = {401: "unauthorized", 403: "forbidden", 404: "not_found"}
    body = response.json()
    assert body["error"]["code"] == codes[status]
    assert body["error"]["request_id"] == response.headers["x-request-id"]


async def test_not_found_reveals_nothing(make_auth_client: Callable[..., Any]) -> None:
    """Another user's id and a missing id get byte-identical answers (bar the request id)."""
    async with make_auth_client() as (app, client):
        viewer = await add_user(app, Role.VIEWER)
        other = await add_user(app, Role.DEVELOPER)
        headers = bearer((await login(client, viewer.username))["access_token"])
        missing = uuid.uuid4()
        hidden = await client.get(f"/api/v1/users/{other.id}", headers=headers)
        absent = await client.get(f"/api/v1/users/{missing}", headers=headers)
    assert hidden.status_code == absent.status_code == 404
    hidden_error = hidden.json()["error"]
    absent_error = absent.json()["error"]
    assert hidden_error["message"] == f"user {other.id} not found"
    assert absent_error["message"] == f"user {missing} not found"
    assert {k: v for k, v in hidden_error.items() if k not in ("message", "request_id")} == {
        k: v for k, v in absent_error.items() if k not in ("message", "request_id")
    }
