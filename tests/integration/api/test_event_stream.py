"""`GET /api/v1/tasks/{id}/events/stream` (Server-Sent Events) on a real uvicorn, read by httpx.

Replay then live with no gap or duplicate, also across a dropped connection
resumed with `Last-Event-ID`; keep-alive comments; the end of the stream when
the task has finished; the same authentication and 404 rule as the task.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import httpx
import pytest

from devteam.domain.enums import Role
from tests import servers
from tests.fakes.agents import ScriptBook, Step
from tests.live import LiveServer

PLAN = [
    {"key": "look", "agent_type": "research", "task": "Research the options", "complexity": 1},
    {
        "key": "build",
        "agent_type": "backend",
        "task": "Build the endpoint",
        "complexity": 2,
        "depends_on": ["look"],
    },
]


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite-memory"),
        pytest.param(
            "postgres", id="postgres-redis", marks=[pytest.mark.postgres, pytest.mark.redis]
        ),
    ]
)
def backend(request: pytest.FixtureRequest, sqlite_url: str) -> dict[str, Any]:
    """Settings of the backends the stream runs on: SQLite and the in-process broker, or
    Postgres and Redis."""
    if request.param == "sqlite":
        return {"database_url": sqlite_url}
    url: str = request.getfixturevalue("postgres_url")
    servers.truncate_postgres(url)
    return {
        "database_url": url,
        "redis_url": request.getfixturevalue("redis_url"),
        "redis_prefix": request.getfixturevalue("redis_prefix"),
    }


@dataclass
class Message:
    """One Server-Sent Event as a client sees it."""

    id: str | None = None
    data: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads("\n".join(self.data))
        return parsed


async def messages(response: httpx.Response) -> AsyncIterator[Message]:
    """Parse the stream as the EventSource specification does (fields `id`, `data`, comments)."""
    current = Message()
    async for line in response.aiter_lines():
        if line == "":
            if current.data or current.id is not None or current.comments:
                yield current
            current = Message()
        elif line.startswith(":"):
            current.comments.append(line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "id":
                current.id = value
            elif name == "data":
                current.data.append(value)


async def submit(server: LiveServer, token: str, **fields: Any) -> str:
    fields.setdefault("task", "Build the feature the test asks for")
    fields.setdefault("complexity", 3)
    async with server.http(token) as http:
        response = await http.post("/api/v1/tasks", json=fields)
    assert response.status_code == 202, response.text
    task_id: str = response.json()["id"]
    return task_id


async def table_seqs(server: LiveServer, task_id: str) -> list[int]:
    async with server.services.store.read() as tx:
        return [e.seq for e in await tx.events.list_after(UUID(task_id), 0, 100_000)]


def stream_path(task_id: str) -> str:
    return f"/api/v1/tasks/{task_id}/events/stream"


async def test_a_dropped_stream_resumes_with_last_event_id(
    backend: dict[str, Any], make_live_server: Callable[..., Any]
) -> None:
    gate = asyncio.Event()
    script = ScriptBook()
    script.on("look", Step(progress=["one", "two"], tool_calls=1))
    script.on("build", Step(progress=["three"], wait=gate), Step())
    async with make_live_server(agents=script.agents(), **backend) as server:
        _, token = await server.login_new_user()
        task_id = await submit(server, token, subtasks=PLAN)
        first: list[dict[str, Any]] = []
        ids: list[str] = []
        async with (
            server.http(token) as http,
            http.stream("GET", stream_path(task_id)) as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-store"
            assert response.headers["x-accel-buffering"] == "no"
            async for message in messages(response):
                if not message.data:
                    continue
                first.append(message.event)
                assert message.id is not None
                ids.append(message.id)
                if message.event["data"].get("message") == "three":
                    break  # the client drops mid-task: `build` waits at the gate
        gate.set()
        rest: list[dict[str, Any]] = []
        async with (
            server.http(token) as http,
            # `after=0` in the URL, as a browser's EventSource keeps it: the header wins.
            http.stream(
                "GET", stream_path(task_id) + "?after=0", headers={"Last-Event-ID": ids[-1]}
            ) as response,
        ):
            assert response.status_code == 200
            # The server ends the stream by itself once the task has finished.
            async with asyncio.timeout(20):
                rest = [m.event async for m in messages(response) if m.data]
        table = await table_seqs(server, task_id)
    seen = [e["seq"] for e in first + rest]
    assert seen == table == list(range(1, len(table) + 1))
    assert ids == [str(e["seq"]) for e in first]
    assert rest[-1]["type"] == "task.completed"
    assert rest[-1]["subtask_id"] is None
    assert all(e["task_id"] == task_id for e in first + rest)


async def test_keep_alive_comments_while_nothing_happens(
    make_live_server: Callable[..., Any],
) -> None:
    gate = asyncio.Event()
    script = ScriptBook().on("root", Step(wait=gate))
    async with make_live_server(agents=script.agents(), sse_keepalive_s=0.1) as server:
        _, token = await server.login_new_user()
        task_id = await submit(server, token, agent_type="research")
        seen: list[Message] = []
        async with server.http(token) as http, http.stream("GET", stream_path(task_id)) as response:
            async with asyncio.timeout(20):
                async for message in messages(response):
                    seen.append(message)
                    if sum(1 for m in seen if m.comments) == 2:
                        gate.set()
        types = [m.event["type"] for m in seen if m.data]
    assert any(c.startswith("ping") for m in seen for c in m.comments)
    assert types[0] == "task.created"
    assert types[-1] == "task.completed"


async def test_a_finished_task_replays_from_after_and_ends(
    make_live_server: Callable[..., Any],
) -> None:
    async with make_live_server(agents=ScriptBook().agents()) as server:
        _, token = await server.login_new_user()
        task_id = await submit(server, token, subtasks=PLAN)
        await server.finished(task_id)
        table = await table_seqs(server, task_id)
        async with server.http(token) as http:
            async with asyncio.timeout(10), http.stream("GET", stream_path(task_id)) as response:
                everything = [int(m.id or 0) async for m in messages(response) if m.data]
            async with (
                asyncio.timeout(10),
                http.stream("GET", stream_path(task_id), params={"after": 3}) as response,
            ):
                later = [int(m.id or 0) async for m in messages(response) if m.data]
            async with (
                asyncio.timeout(10),
                http.stream(
                    "GET", stream_path(task_id), headers={"Last-Event-ID": str(table[-1])}
                ) as response,
            ):
                nothing = [m async for m in messages(response) if m.data]
    assert everything == table
    assert later == table[3:]
    assert nothing == []


async def test_a_subtask_stream_has_only_its_events(make_live_server: Callable[..., Any]) -> None:
    async with make_live_server(agents=ScriptBook().agents()) as server:
        _, token = await server.login_new_user()
        task_id = await submit(server, token, subtasks=PLAN)
        await server.finished(task_id)
        async with server.http(token) as http:
            subtasks = (await http.get(f"/api/v1/tasks/{task_id}")).json()["subtasks"]
            look = next(s["id"] for s in subtasks if s["key"] == "look")
            async with asyncio.timeout(10), http.stream("GET", stream_path(look)) as response:
                events = [m.event async for m in messages(response) if m.data]
    assert events
    assert {e["subtask_id"] for e in events} == {look}
    assert events[-1]["type"] == "task.completed"


async def test_authentication_and_object_level_access(
    make_live_server: Callable[..., Any],
) -> None:
    async with make_live_server() as server:
        _, owner_token = await server.login_new_user()
        _, other_token = await server.login_new_user()
        _, operator_token = await server.login_new_user(Role.OPERATOR)
        task_id = await submit(server, owner_token, agent_type="research")
        async with server.http() as anonymous:
            unauthenticated = await anonymous.get(stream_path(task_id))
        async with server.http(other_token) as other:
            hidden = await other.get(stream_path(task_id))
            missing = await other.get(stream_path(str(UUID(int=1))))
            malformed = await other.get(
                stream_path(task_id), headers={"Last-Event-ID": "not-a-number"}
            )
        async with (
            server.http(operator_token) as operator,
            operator.stream("GET", stream_path(task_id)) as response,
        ):
            status = response.status_code
            first = await anext(aiter(messages(response)))
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["code"] == "unauthorized"
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"]["code"] == "not_found"
    assert hidden.json()["error"]["message"] == f"task {task_id} not found"
    assert malformed.status_code == 422
    assert malformed.json()["error"]["code"] == "validation_error"
    assert status == 200
    assert first.event["type"] == "task.created"


async def test_a_session_ended_by_logout_ends_the_stream(
    make_live_server: Callable[..., Any],
) -> None:
    async with make_live_server(ws_heartbeat_s=0.1) as server:
        _, token = await server.login_new_user()
        task_id = await submit(server, token, agent_type="research")  # no executors: it waits
        async with server.http(token) as http, http.stream("GET", stream_path(task_id)) as response:
            async with asyncio.timeout(10):
                reader = aiter(messages(response))
                first = await anext(reader)
                assert (await http.post("/api/v1/auth/logout")).status_code == 204
                rest = [m async for m in reader]
    assert first.event["type"] == "task.created"
    assert rest == []
