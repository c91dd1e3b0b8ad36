"""An outage is a quick 503 and nothing is lost.

Redis is a server of this test alone, paused (SIGSTOP) or killed; Postgres is the
shared server, whose connections to this test's own database are terminated.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from devteam.domain.enums import Role
from devteam.storage import database
from tests import servers
from tests.auth import add_user, assert_error, bearer, login
from tests.own_servers import own_redis

pytestmark = pytest.mark.redis

TASK = {"task": "Add a health endpoint to the service", "complexity": 3}
QUICK_S = 2.5
"""An outage answer comes within a second or two (the limiter's timeout is 1 s)."""


async def timed(request: Any) -> tuple[httpx.Response, float]:
    began = time.monotonic()
    response = await request
    return response, time.monotonic() - began


def assert_unavailable(response: httpx.Response) -> None:
    assert_error(response, 503, "service_unavailable")
    assert int(response.headers["retry-after"]) >= 1


@pytest.mark.parametrize("outage", ["paused", "killed"])
async def test_with_redis_out_reads_go_on_and_writes_and_logins_get_a_quick_503(
    make_auth_client: Callable[..., Any], tmp_path: Path, outage: str
) -> None:
    with own_redis(tmp_path) as redis:
        async with make_auth_client(redis_url=redis.url) as (app, client):
            user = await add_user(app, Role.DEVELOPER)
            headers = bearer((await login(client, user.username))["access_token"])
            submitted = await client.post("/api/v1/tasks", json=TASK, headers=headers)
            assert submitted.status_code == 202, submitted.text
            task_id = submitted.json()["id"]
            try:
                redis.pause() if outage == "paused" else redis.kill()

                read, seconds = await timed(client.get(f"/api/v1/tasks/{task_id}", headers=headers))
                assert read.status_code == 200, read.text
                assert read.json()["id"] == task_id
                assert seconds < QUICK_S
                listed, seconds = await timed(client.get("/api/v1/tasks", headers=headers))
                assert listed.status_code == 200 and seconds < QUICK_S

                write, seconds = await timed(
                    client.post("/api/v1/tasks", json=TASK, headers=headers)
                )
                assert_unavailable(write)
                assert seconds < QUICK_S
                cancel, seconds = await timed(
                    client.post(f"/api/v1/tasks/{task_id}/cancel", headers=headers)
                )
                assert_unavailable(cancel)
                assert seconds < QUICK_S
                log_in, seconds = await timed(
                    client.post(
                        "/api/v1/auth/token",
                        data={"username": user.username, "password": "whatever"},
                    )
                )
                assert_unavailable(log_in)
                assert seconds < QUICK_S
            finally:
                if outage == "paused":
                    redis.resume()
            # Nothing was lost: the task submitted before the outage is still there.
            async with app.state.services.store.read() as tx:
                assert await tx.tasks.get(uuid.UUID(task_id)) is not None


async def terminate_connections(url: str) -> int:
    """End every connection to the database at `url` but this one (the service's)."""
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(servers.POSTGRES_ADMIN_URL, timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
    finally:
        await conn.close()
    return len(rows)


@pytest.fixture
def empty_postgres(postgres_url: str) -> str:
    """This session's own Postgres database, emptied."""
    servers.truncate_postgres(postgres_url)
    return postgres_url


@pytest.mark.postgres
async def test_with_postgres_connections_cut_a_read_is_retried_and_a_write_is_a_503(
    make_auth_client: Callable[..., Any],
    empty_postgres: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    postgres_url = empty_postgres
    # Pooled connections are used straight away, as under load (no ping before use),
    # so the cut is seen by the request itself.
    monkeypatch.setattr(database, "PING_AFTER_IDLE_S", 3600.0)
    async with make_auth_client(database_url=postgres_url, database_pool_size=2) as (app, client):
        user = await add_user(app, Role.DEVELOPER)
        headers = bearer((await login(client, user.username))["access_token"])
        submitted = await client.post("/api/v1/tasks", json=TASK, headers=headers)
        assert submitted.status_code == 202, submitted.text
        task_id = submitted.json()["id"]
        # Warm the pool, so the requests below take connections that are then cut.
        await asyncio.gather(*(client.get("/api/v1/tasks", headers=headers) for _ in range(4)))

        assert await terminate_connections(postgres_url) >= 1
        read = await client.get(f"/api/v1/tasks/{task_id}", headers=headers)
        assert read.status_code == 200, read.text
        assert read.json()["id"] == task_id

        await client.get("/api/v1/tasks", headers=headers)  # the pool holds live connections
        assert await terminate_connections(postgres_url) >= 1
        write = await client.post(f"/api/v1/tasks/{task_id}/cancel", headers=headers)
        assert_unavailable(write)
        # Once the pool has fresh connections, the same write goes through.
        again = await client.post(f"/api/v1/tasks/{task_id}/cancel", headers=headers)
        assert again.status_code == 202, again.text
