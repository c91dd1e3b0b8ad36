"""`devteam.client` against a live server: typed tasks, token renewal, resuming event streams."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from devteam.client import (
    ApiError,
    AsyncClient,
    Client,
    MemoryTokenStore,
    SessionEnded,
    TaskRequest,
    Tokens,
)
from devteam.domain.enums import AgentType, Role, TaskStatus
from tests.auth import PASSWORD, add_user, security_config
from tests.e2e.test_cli_client import Team, live, make_team
from tests.proxy import Proxy

pytestmark = pytest.mark.slow


@pytest.fixture
def team() -> Team:
    return make_team()


async def test_submit_follow_list_cancel_approve_typed(
    make_live_server: Callable[..., Any], team: Team
) -> None:
    async with live(make_live_server, team) as server:
        user = await add_user(server.app, Role.DEVELOPER)
        async with AsyncClient(server.url) as client:
            with pytest.raises(SessionEnded, match="not logged in"):
                await client.list()
            await client.login(user.username, PASSWORD)
            task = await client.submit(
                TaskRequest(
                    task="Add a health endpoint to the service",
                    complexity=3,
                    agent_type=AgentType.BACKEND,
                )
            )
            events = [event async for event in client.events(task.id)]
            done = await client.get(task.id)
            blocked = await client.submit(
                {"task": "Build the settings page", "complexity": 2, "agent_type": "frontend"}
            )
            cancelled = await client.cancel(blocked.id)
            with pytest.raises(ApiError) as refused:
                await client.approve(task.id)
            page = await client.list(limit=1)
            rest = await client.list(limit=10, cursor=page.next_cursor)
            ended = await client.wait(blocked.id)

    assert task.status == TaskStatus.PENDING
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].type == "task.created" and events[-1].type == "task.completed"
    assert done.status == TaskStatus.COMPLETED
    assert done.result is not None
    assert (done.result.output_type, done.result.summary) == ("Echo", "root done")
    assert done.result.output["key"] == "root"
    assert cancelled.status in (TaskStatus.CANCELLING, TaskStatus.CANCELLED)
    assert ended.status == TaskStatus.CANCELLED
    assert (refused.value.status, refused.value.code) == (409, "conflict")
    assert [t.id for t in page.items + rest.items] == [blocked.id, task.id]


async def test_an_expired_token_is_renewed_transparently(
    make_live_server: Callable[..., Any], team: Team
) -> None:
    config = security_config(access_ttl_s=1, leeway_s=0)
    async with live(make_live_server, team, config=config) as server:
        user = await add_user(server.app, Role.DEVELOPER)
        async with AsyncClient(server.url) as client:
            first = await client.login(user.username, PASSWORD)
            await asyncio.sleep(1.5)
            # Believe the token still good (a skewed clock): the service's 401 token_expired
            # must lead to a renewal and the call succeeding, not to an error.
            store = client.store
            assert isinstance(store, MemoryTokenStore)
            store.save(Tokens(first.access_token, first.refresh_token, time.time() + 3600))
            page = await client.list()
            renewed = store.load()
            # A fixed token cannot be renewed: its expiry is the caller's answer.
            async with AsyncClient(server.url, token=first.access_token) as fixed:
                with pytest.raises(ApiError) as expired:
                    await fixed.list()
    assert page.items == []
    assert renewed is not None and renewed.refresh_token != first.refresh_token
    assert (expired.value.status, expired.value.code) == (401, "token_expired")


async def test_events_resume_after_a_dropped_connection(
    make_live_server: Callable[..., Any], team: Team
) -> None:
    async with live(make_live_server, team) as server, Proxy(server.port) as proxy:
        user = await add_user(server.app, Role.DEVELOPER)
        notes: list[str] = []
        async with AsyncClient(proxy.url) as client:
            await client.login(user.username, PASSWORD)
            task = await client.submit(
                {"task": "Map the codebase of the service", "complexity": 2,
                 "agent_type": "codebase_analyzer"}
            )  # fmt: skip
            seqs: list[int] = []
            async for event in client.events(task.id, on_reconnect=notes.append):
                seqs.append(event.seq)
                if event.data.get("message") == "before the gate":
                    proxy.cut()  # mid-task: the agent waits at the gate
                    team.gate.set()
            stored = await client.request("GET", f"/api/v1/tasks/{task.id}/events")
            # Resuming from a given seq yields only what follows it.
            tail = [e.seq async for e in client.events(task.id, after=seqs[-3])]
    assert any("resuming after #" in note for note in notes), notes
    table = [e["seq"] for e in stored["items"]]
    assert seqs == table == list(range(1, len(table) + 1))
    assert tail == seqs[-2:]


async def test_the_blocking_client(make_live_server: Callable[..., Any], team: Team) -> None:
    async with live(make_live_server, team) as server:
        user = await add_user(server.app, Role.DEVELOPER)

        def use() -> tuple[list[str], TaskStatus, int]:
            with Client(server.url) as client:
                client.login(user.username, PASSWORD)
                task = client.submit(
                    TaskRequest(task="Add a health endpoint", complexity=2, agent_type="backend")
                )
                kinds = [event.type for event in client.events(task.id)]
                return kinds, client.get(task.id).status, len(client.list().items)

        kinds, status, listed = await asyncio.to_thread(use)
    assert kinds[0] == "task.created" and kinds[-1] == "task.completed"
    assert (status, listed) == (TaskStatus.COMPLETED, 1)
