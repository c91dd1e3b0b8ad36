"""SSE and webhooks across real processes: `devteam serve --no-executors` and `devteam worker`.

On one Postgres and one Redis: a Server-Sent Events stream on the API process
follows a task that the worker runs, and ends with it; a webhook of a task that
ends after the API process stopped is delivered by the worker.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import servers
from tests.auth import JWT_SECRET, PASSWORD
from tests.e2e.test_scale_out import create_user
from tests.fakes.served_agents import SCRIPT_VARIABLE
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.processes import Process, clean_env

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(180)]

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SCRIPT = {
    "quick": [{"sleep": 0.5, "progress": ["reading", "writing"], "tool_calls": 1}],
    # Long enough for the API process to stop before it ends.
    "slow": [{"sleep": 8.0}],
}


def plan(key: str) -> list[dict[str, Any]]:
    return [{"key": key, "agent_type": "research", "task": f"Research, {key}ly", "complexity": 1}]


@pytest.fixture
def pair(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> Iterator[tuple[Process, Process]]:
    """(worker, api) with webhooks configured; the worker runs the agents."""
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
        DEVTEAM_WEBHOOK_SECRET=SECRET,
        DEVTEAM_WEBHOOK_ALLOWED_HOSTS='["127.0.0.1"]',
        DEVTEAM_WEBHOOK_POLL_S="0.1",
        DEVTEAM_SSE_KEEPALIVE_S="0.5",
    )
    env[SCRIPT_VARIABLE] = json.dumps(SCRIPT)
    worker = Process(
        "worker",
        ["worker", "--agents", "tests.fakes.served_agents:agents"],
        env,
        tmp_path / "worker.log",
    )
    api = Process("api", ["serve", "--no-executors"], env, tmp_path / "api.log")
    try:
        worker.wait_ready()
        api.wait_ready()
        yield worker, api
    finally:
        for process in (api, worker):
            process.stop()


async def test_a_stream_follows_the_worker_and_the_worker_delivers_webhooks(
    pair: tuple[Process, Process], postgres_url: str
) -> None:
    worker, api = pair
    await create_user(postgres_url, "ada")
    async with WebhookReceiver(SECRET) as receiver:
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
            login = await http.post(
                "/api/v1/auth/token", data={"username": "ada", "password": PASSWORD}
            )
            http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
            slow = await http.post(
                "/api/v1/tasks",
                json={
                    "task": "A task that ends after the API stopped",
                    "complexity": 1,
                    "subtasks": plan("slow"),
                    "webhook": {"url": receiver.url},
                },
            )
            quick = await http.post(
                "/api/v1/tasks",
                json={"task": "A task followed live", "complexity": 1, "subtasks": plan("quick")},
            )
            assert slow.status_code == quick.status_code == 202, slow.text + quick.text
            quick_id = quick.json()["id"]
            seqs: list[int] = []
            types: list[str] = []
            async with (
                asyncio.timeout(60),
                http.stream("GET", f"/api/v1/tasks/{quick_id}/events/stream") as stream,
            ):
                async for line in stream.aiter_lines():
                    if line.startswith("data: "):
                        event = json.loads(line.removeprefix("data: "))
                        seqs.append(event["seq"])
                        types.append(event["type"])
        assert seqs == list(range(1, len(seqs) + 1))
        assert types[-1] == "task.completed"
        assert "tool.call" in types, "the worker's events reached the API process"
        # Only the worker is left to end the slow task and call its webhook.
        # uvicorn re-raises the signal once shut down, so the exit is by SIGTERM.
        assert api.terminate() in (0, -signal.SIGTERM)
        assert receiver.received == []
        (call,) = await receiver.deliveries(1, timeout=60)
    assert call.verified
    assert call.payload["id"] == slow.json()["id"]
    assert call.payload["status"] == "completed"
    assert worker.handle.poll() is None
