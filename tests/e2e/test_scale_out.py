"""Two `devteam serve` processes on one Postgres and one Redis.

One runs the work (executors with scripted agents), the other serves the API only;
a WebSocket subscriber on the API process sees every event of a task the other
process runs, through Redis pub/sub, exactly 1..N.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from devteam.domain.enums import Role
from devteam.security.accounts import Accounts
from devteam.security.audit import Auditor
from devteam.security.passwords import Passwords
from devteam.storage import Database, Store
from tests import servers
from tests.auth import FAST_PASSWORDS, JWT_SECRET, PASSWORD
from tests.fakes.served_agents import SCRIPT_VARIABLE
from tests.live import events_until_end, receive, send
from tests.processes import Process, clean_env

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

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
SCRIPT = {
    # The first step takes a moment, so the subscribers are live before most events.
    "look": [{"sleep": 1.0, "progress": ["reading", "writing"], "tool_calls": 2}],
    "*": [{"progress": ["reading", "writing"], "tool_calls": 2}],
}


@pytest.fixture
def pair(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> Iterator[tuple[Process, Process]]:
    """(worker, api): the first runs agents, the second only serves the API."""
    servers.truncate_postgres(postgres_url)
    env = clean_env(
        DEVTEAM_DATABASE_URL=postgres_url,
        DEVTEAM_REDIS_URL=redis_url,
        DEVTEAM_REDIS_PREFIX=redis_prefix,
        DEVTEAM_JWT_SECRET=JWT_SECRET,
        DEVTEAM_MIGRATE_ON_START="false",
        DEVTEAM_WORKSPACES_ROOT=str(tmp_path / "workspaces"),
        DEVTEAM_LOG_LEVEL="WARNING",
        DEVTEAM_SHUTDOWN_GRACE_S="2",
    )
    env[SCRIPT_VARIABLE] = json.dumps(SCRIPT)
    worker = Process(
        "worker", ["serve", "--agents", "tests.fakes.served_agents:agents"], env, tmp_path / "w.log"
    )
    api = Process("api", ["serve", "--no-executors"], env, tmp_path / "a.log")
    try:
        worker.wait_ready()
        api.wait_ready()
        yield worker, api
    finally:
        for process in (api, worker):
            process.stop()


async def create_user(url: str, username: str) -> None:
    store = Store(Database(url))
    try:
        accounts = Accounts(store, Passwords(FAST_PASSWORDS))
        await accounts.create(
            username, PASSWORD, Role.DEVELOPER, auditor=Auditor(store), actor="test"
        )
    finally:
        await store.close()


async def test_a_subscriber_on_one_process_sees_every_event_of_work_run_by_another(
    pair: tuple[Process, Process], postgres_url: str
) -> None:
    worker, api = pair
    await create_user(postgres_url, "ada")
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        login = await http.post(
            "/api/v1/auth/token", data={"username": "ada", "password": PASSWORD}
        )
        token = login.json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        connect: dict[str, Any] = {"additional_headers": headers, "proxy": None}
        async with (
            websockets.connect(f"ws://127.0.0.1:{api.port}/api/v1/ws", **connect) as on_api,
            websockets.connect(f"ws://127.0.0.1:{worker.port}/api/v1/ws", **connect) as on_worker,
        ):
            submitted = await http.post(
                "/api/v1/tasks",
                json={"task": "Build the feature end to end", "complexity": 3, "subtasks": PLAN},
                headers=headers,
            )
            assert submitted.status_code == 202, submitted.text
            task_id = submitted.json()["id"]
            for socket in (on_api, on_worker):
                await send(socket, type="subscribe", task_id=task_id, after=0)
                assert (await receive(socket))["type"] == "subscribed"
            seen_on_api, seen_on_worker = await asyncio.gather(
                events_until_end(on_api, task_id, timeout=60),
                events_until_end(on_worker, task_id, timeout=60),
            )
        events = (await http.get(f"/api/v1/tasks/{task_id}/events", headers=headers)).json()
        task = (await http.get(f"/api/v1/tasks/{task_id}", headers=headers)).json()
    table = [e["seq"] for e in events["items"]]
    assert task["status"] == "completed"
    assert [e["seq"] for e in seen_on_api] == table == list(range(1, len(table) + 1))
    assert seen_on_api == seen_on_worker
    assert sum(e["type"] == "tool.call" for e in seen_on_api) == 4
