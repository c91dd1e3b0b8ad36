"""The WebSocket hub on a real uvicorn, with a real `websockets` client.

Replay then live with no gap and no duplicate (also across a dropped connection,
interleaved publishers and a replay racing live events), lagged slow clients,
several subscriptions, the protocol's errors, limits and authentication.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest
import websockets
from prometheus_client import REGISTRY
from websockets.asyncio.client import ClientConnection

from devteam.broker.channels import encode_events, events_channel
from devteam.domain.enums import Role
from devteam.domain.events import Event, EventType, NewEvent
from devteam.settings.security import RateLimitsConfig
from tests.auth import security_config
from tests.factories import create_root_task
from tests.fakes.agents import ScriptBook, Step
from tests.live import LiveServer, events_until_end, receive, send

TWO_STEP_PLAN = [
    {"key": "look", "agent_type": "research", "task": "Research the options", "complexity": 1},
    {
        "key": "build",
        "agent_type": "backend",
        "task": "Build the endpoint",
        "complexity": 2,
        "depends_on": ["look"],
    },
]


def seqs(events: list[dict[str, Any]]) -> list[int]:
    return [e["seq"] for e in events]


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


async def subscribe(socket: ClientConnection, task_id: str, after: int = 0) -> None:
    await send(socket, type="subscribe", task_id=task_id, after=after)
    assert await receive(socket) == {"type": "subscribed", "task_id": task_id, "after": after}


def lagged_count() -> float:
    return REGISTRY.get_sample_value("devteam_ws_drops_total", {"reason": "lagged"}) or 0.0


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a condition the server offers no event for (a metric), checking often."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def close_code(socket: ClientConnection) -> int | None:
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await receive(socket)
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


async def test_watch_a_task_to_completion(make_live_server: Callable[..., Any]) -> None:
    script = ScriptBook().on("*", Step(progress=["reading", "writing"], tool_calls=2))
    async with make_live_server(agents=script.agents()) as server:
        _, token = await server.login_new_user()
        task_id = await submit(server, token, subtasks=TWO_STEP_PLAN)
        async with server.websocket(token) as socket:
            await subscribe(socket, task_id)
            events = await events_until_end(socket, task_id)
        table = await table_seqs(server, task_id)
    assert seqs(events) == table == list(range(1, len(table) + 1))
    types = [e["type"] for e in events]
    assert types[0] == "task.created"
    assert types[-1] == "task.completed"
    assert {"task.planned", "task.started", "task.progress", "tool.call"} <= set(types)
    assert all(e["task_id"] == task_id for e in events)


async def test_a_dropped_connection_resumes_after_the_last_seq(
    make_live_server: Callable[..., Any],
) -> None:
    gate = asyncio.Event()
    script = ScriptBook()
    script.on("look", Step(progress=["one", "two"], tool_calls=1))
    script.on("build", Step(progress=["three"], wait=gate), Step())
    async with make_live_server(agents=script.agents()) as server:
        _, token = await server.login_new_user()
        task_id = await submit(server, token, subtasks=TWO_STEP_PLAN)
        first: list[dict[str, Any]] = []
        async with server.websocket(token) as socket:
            await subscribe(socket, task_id)
            # Up to `build` reporting progress; then it waits at the gate, mid-task.
            while not any(e["data"].get("message") == "three" for e in first):
                message = await receive(socket)
                first.append(message["event"])
        # Events happen while nobody listens.
        gate.set()
        await server.finished(task_id)
        async with server.websocket(token) as socket:
            await subscribe(socket, task_id, after=first[-1]["seq"])
            rest = await events_until_end(socket, task_id)
        table = await table_seqs(server, task_id)
    assert rest, "the task went on after the drop"
    assert seqs(first + rest) == table == list(range(1, len(table) + 1))


async def test_live_gaps_are_filled_from_the_table_and_repeats_dropped(
    make_live_server: Callable[..., Any],
) -> None:
    """Messages of several publishers may interleave: order and completeness come from seq."""
    async with make_live_server() as server:
        user, token = await server.login_new_user()
        store, broker = server.services.store, server.services.broker
        task = await create_root_task(store, user)

        async def append(count: int) -> list[Event]:
            async with store.transaction() as tx:
                return await tx.events.append(
                    task.id, [NewEvent(type=EventType.TASK_PROGRESS) for _ in range(count)]
                )

        async def publish(*events: Event) -> None:
            await broker.pubsub.publish(events_channel(task.id), encode_events(list(events)))

        async def next_seqs(count: int) -> list[int]:
            return [(await receive(socket))["event"]["seq"] for _ in range(count)]

        await append(2)
        async with server.websocket(token) as socket:
            await subscribe(socket, str(task.id))
            assert await next_seqs(2) == [1, 2]
            three, four, five = await append(3)
            await publish(five)  # 3 and 4 were never published: read from the table
            assert await next_seqs(3) == [3, 4, 5]
            await publish(four, five)
            await publish(three)
            (six,) = await append(1)
            await publish(six)
            assert await next_seqs(1) == [6]  # nothing repeated before it
            seven, eight = await append(2)
            await publish(eight)
            await publish(seven)
            (nine,) = await append(1)
            await publish(nine)
            assert await next_seqs(3) == [7, 8, 9]


async def test_replay_racing_live_events_has_no_gap_or_duplicate(
    make_live_server: Callable[..., Any],
) -> None:
    """A replay of three pages while new events are appended and published."""
    async with make_live_server() as server:
        user, token = await server.login_new_user()
        store, broker = server.services.store, server.services.broker
        task = await create_root_task(store, user)
        async with store.transaction() as tx:
            await tx.events.append(
                task.id, [NewEvent(type=EventType.TASK_PROGRESS) for _ in range(1_200)]
            )

        async def produce() -> None:
            for _ in range(50):
                async with store.transaction() as tx:
                    events = await tx.events.append(
                        task.id, [NewEvent(type=EventType.TASK_PROGRESS)]
                    )
                await broker.pubsub.publish(events_channel(task.id), encode_events(events))

        async with server.websocket(token) as socket:
            await subscribe(socket, str(task.id))
            producer = asyncio.create_task(produce())
            received = [(await receive(socket))["event"]["seq"] for _ in range(1_250)]
            await producer
    assert received == list(range(1, 1_251))


async def test_a_slow_client_is_lagged_and_a_fast_one_is_not(
    make_live_server: Callable[..., Any],
) -> None:
    # Large incompressible messages fill the socket buffers of a client that reads nothing.
    messages = [secrets.token_urlsafe(6_000) for _ in range(100)]
    gate = asyncio.Event()
    script = ScriptBook().on("look", Step(wait=gate)).on("build", Step(progress=messages))
    async with make_live_server(
        agents=script.agents(), send_buffer=16_384, ws_queue_size=4, ws_lag_timeout_s=0.3
    ) as server:
        _, token = await server.login_new_user()
        task_id = await submit(server, token, subtasks=TWO_STEP_PLAN)
        lagged_before = lagged_count()
        async with (
            server.websocket(token, compression=None) as fast,
            server.websocket(token, compression=None, max_queue=1, receive_buffer=4096) as slow,
        ):
            await subscribe(fast, task_id)
            await subscribe(slow, task_id)
            gate.set()
            fast_events = await events_until_end(fast, task_id)
            # The server gives up on the slow client after `ws_lag_timeout_s` without room.
            await until(lambda: lagged_count() > lagged_before)
            # The slow client reads only now: what was queued, then `lagged`.
            slow_events: list[dict[str, Any]] = []
            while (message := await receive(slow))["type"] == "event":
                slow_events.append(message["event"])
            assert message == {
                "type": "lagged",
                "task_id": task_id,
                "last_seq": slow_events[-1]["seq"],
            }
            # Resubscribing with `after = last_seq` gives the rest, without gap.
            await subscribe(slow, task_id, after=message["last_seq"])
            slow_events += await events_until_end(slow, task_id)
        table = await table_seqs(server, task_id)
    assert seqs(fast_events) == table
    assert seqs(slow_events) == table
    assert len(table) > 100


async def test_several_subscriptions_and_unsubscribe(
    make_live_server: Callable[..., Any],
) -> None:
    gate = asyncio.Event()
    script = ScriptBook().on("root", Step(wait=gate, progress=["after the gate"]))
    async with make_live_server(agents=script.agents()) as server:
        _, token = await server.login_new_user()
        kept = await submit(server, token, agent_type="backend")
        dropped = await submit(server, token, agent_type="research")
        async with server.websocket(token) as socket:
            await send(socket, type="subscribe", task_id=kept)
            await send(socket, type="subscribe", task_id=dropped)
            acknowledged = []
            while len(acknowledged) < 2:
                if (message := await receive(socket))["type"] == "subscribed":
                    acknowledged.append(message["task_id"])
            assert sorted(acknowledged) == sorted([kept, dropped])
            await send(socket, type="unsubscribe", task_id=dropped)
            after_unsubscribe: list[dict[str, Any]] = []
            while (message := await receive(socket))["type"] != "unsubscribed":
                after_unsubscribe.append(message)
            assert message == {"type": "unsubscribed", "task_id": dropped}
            gate.set()
            events = await events_until_end(socket, kept)
            await send(socket, type="ping")
            late = []
            while (message := await receive(socket))["type"] != "pong":
                late.append(message)
        await server.finished(dropped)
    assert {m["task_id"] for m in after_unsubscribe} <= {kept, dropped}
    assert all(m["task_id"] == kept for m in late), "no event of an unsubscribed task"
    assert events[-1]["type"] == "task.completed"


async def test_a_subtask_subscription_streams_only_that_subtask(
    make_live_server: Callable[..., Any],
) -> None:
    script = ScriptBook().on("*", Step(progress=["working"], tool_calls=1))
    async with make_live_server(agents=script.agents()) as server:
        _, token = await server.login_new_user()
        task_id = await submit(server, token, subtasks=TWO_STEP_PLAN)
        await server.finished(task_id)
        async with server.http(token) as http:
            task = (await http.get(f"/api/v1/tasks/{task_id}")).json()
        look = next(s["id"] for s in task["subtasks"] if s["key"] == "look")
        async with server.websocket(token) as socket:
            await subscribe(socket, look)
            events = []
            while (event := (await receive(socket))["event"])["type"] != "task.completed":
                events.append(event)
            events.append(event)
    assert {e["subtask_id"] for e in events} == {look}
    assert seqs(events) == sorted(set(seqs(events)))
    assert [e["type"] for e in events if e["type"] != "rule.decision"][-4:] == [
        "task.started",
        "task.progress",
        "tool.call",
        "task.completed",
    ]


async def test_malformed_messages_get_errors_and_the_connection_stays(
    make_live_server: Callable[..., Any],
) -> None:
    task_id = str(uuid.uuid4())
    cases: list[tuple[str | bytes, str]] = [
        ("not json", "the message is not JSON"),
        (json.dumps({"type": "dance"}), "type must be one of: subscribe, unsubscribe, ping"),
        (json.dumps(["subscribe"]), 'a message is a JSON object: {"type": ...}'),
        (json.dumps({"task_id": task_id}), "type must be one of: subscribe, unsubscribe, ping"),
        (json.dumps({"type": "subscribe"}), "task_id: Field required"),
        (json.dumps({"type": "subscribe", "task_id": "nope"}), "task_id: Input should be"),
        (json.dumps({"type": "subscribe", "task_id": task_id, "after": -1}), "after: Input"),
        (json.dumps({"type": "subscribe", "task_id": task_id, "after": "3"}), "after: Input"),
        (json.dumps({"type": "unsubscribe"}), "task_id: Field required"),
        (b"\x00\x01", "send JSON text messages"),
    ]
    async with make_live_server() as server:
        _, token = await server.login_new_user()
        async with server.websocket(token) as socket:
            for raw, message in cases:
                await socket.send(raw)
                error = await receive(socket)
                assert error["type"] == "error", raw
                assert error["code"] == "bad_request", raw
                assert error["message"].startswith(message), (raw, error)
            await send(socket, type="ping")
            assert await receive(socket) == {"type": "pong"}


async def test_a_task_the_caller_may_not_read_is_not_found(
    make_live_server: Callable[..., Any],
) -> None:
    async with make_live_server() as server:
        other, _ = await server.login_new_user(Role.DEVELOPER)
        hidden = await create_root_task(server.services.store, other)
        _, token = await server.login_new_user(Role.DEVELOPER)
        missing = uuid.uuid4()
        async with server.websocket(token) as socket:
            for task_id in (hidden.id, missing):
                await send(socket, type="subscribe", task_id=str(task_id))
                assert await receive(socket) == {
                    "type": "error",
                    "code": "not_found",
                    "message": f"task {task_id} not found",
                    "task_id": str(task_id),
                }
        _, operator = await server.login_new_user(Role.OPERATOR)
        async with server.websocket(operator) as socket:
            await subscribe(socket, str(hidden.id))


async def test_bad_tokens_close_4401_and_the_query_parameter_works(
    make_live_server: Callable[..., Any],
) -> None:
    async with make_live_server() as server:
        _, token = await server.login_new_user()
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            async with websockets.connect(
                server.ws_url, additional_headers=headers, proxy=None
            ) as socket:
                assert await close_code(socket) == 4401
        async with websockets.connect(
            f"{server.ws_url}?access_token={token}", proxy=None
        ) as socket:
            await send(socket, type="ping")
            assert await receive(socket) == {"type": "pong"}


async def test_heartbeats_and_a_session_ended_by_logout_closes_4401(
    make_live_server: Callable[..., Any],
) -> None:
    async with make_live_server(ws_heartbeat_s=0.1) as server:
        _, token = await server.login_new_user()
        async with server.websocket(token) as socket:
            raw = await asyncio.wait_for(socket.recv(), 5)
            assert json.loads(raw) == {"type": "heartbeat"}
            async with server.http(token) as http:
                assert (await http.post("/api/v1/auth/logout")).status_code == 204
            assert await close_code(socket) == 4401


async def test_limits_message_size_subscriptions_and_connections(
    make_live_server: Callable[..., Any],
) -> None:
    config = security_config(rate_limits=RateLimitsConfig(ws_connect_per_user="2/minute"))
    async with make_live_server(
        config, ws_max_message_bytes=1024, ws_max_subscriptions=2
    ) as server:
        user, token = await server.login_new_user()
        tasks = [str((await create_root_task(server.services.store, user)).id) for _ in range(3)]
        async with server.websocket(token) as socket:
            await subscribe(socket, tasks[0])
            await subscribe(socket, tasks[1])
            await send(socket, type="subscribe", task_id=tasks[2])
            assert await receive(socket) == {
                "type": "error",
                "code": "bad_request",
                "message": "at most 2 subscriptions per connection",
                "task_id": tasks[2],
            }
            await send(socket, type="ping", padding="x" * 2048)
            assert await close_code(socket) == 1009
        async with server.websocket(token) as socket:
            await send(socket, type="ping")
            assert await receive(socket) == {"type": "pong"}
        async with server.websocket(token) as socket:
            assert await close_code(socket) == 4429
