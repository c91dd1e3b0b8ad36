"""Scale-out: two API processes and two workers on one Postgres and one Redis.

Every process is a real `devteam serve --no-executors` or `devteam worker`; the
agents are scripted (they sleep, so a worker dies with work in its hands). The
checks read the tasks and events tables directly.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml

from tests import servers
from tests.auth import JWT_SECRET, PASSWORD
from tests.e2e.test_scale_out import PLAN, create_user
from tests.fakes.served_agents import SCRIPT_VARIABLE
from tests.processes import REPO, Process, clean_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.timeout(240),
]

AGENTS = ["--agents", "tests.fakes.served_agents:agents"]


def write_config(target: Path, leases: dict[str, float]) -> Path:
    """The repository's config with short leases, room for the load and fast retries."""
    shutil.copytree(REPO / "config", target)
    leader = yaml.safe_load((target / "team_leader.yaml").read_text())
    leader["leases"] = leases
    leader["concurrency"] = {"global": 100, "per_user": 100, "per_agent_type": {}}
    leader["retry"]["initial_interval_s"] = 0.1
    (target / "team_leader.yaml").write_text(yaml.safe_dump(leader))
    security = yaml.safe_load((target / "security.yaml").read_text())
    security["rate_limits"]["reads_per_user"] = "100000/minute"
    security["rate_limits"]["writes_per_user"] = "100000/minute"
    security["rate_limits"]["task_submissions_per_user"] = "100000/minute"
    (target / "security.yaml").write_text(yaml.safe_dump(security))
    return target


LEASES = {"duration_s": 3, "heartbeat_s": 1, "recovery_interval_s": 1}
GRACE_S = 1
# `look` ends within a stopping worker's grace period, `build` does not.
SCRIPT = {
    "look": [{"sleep": 0.5, "progress": ["working"]}],
    "build": [{"sleep": 3.5, "progress": ["working"]}],
}


@dataclass
class Cluster:
    apis: list[Process]
    workers: list[Process]
    postgres_url: str
    env: dict[str, str]
    logs: Path
    users: set[str] = field(default_factory=set)

    def add_worker(self) -> Process:
        name = f"worker{len(self.workers)}"
        worker = Process(name, WORKER, self.env, self.logs / f"{name}.log")
        self.workers.append(worker)
        return worker

    def processes(self) -> list[Process]:
        return [*self.workers, *self.apis]


WORKER = ["worker", "--concurrency", "10", *AGENTS]


@pytest.fixture
def cluster(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> Iterator[Cluster]:
    """Two workers and two API processes on one Postgres and one Redis."""
    servers.truncate_postgres(postgres_url)
    env = clean_env(
        DEVTEAM_DATABASE_URL=postgres_url,
        DEVTEAM_REDIS_URL=redis_url,
        DEVTEAM_REDIS_PREFIX=redis_prefix,
        DEVTEAM_JWT_SECRET=JWT_SECRET,
        DEVTEAM_MIGRATE_ON_START="false",
        DEVTEAM_CONFIG_DIR=str(write_config(tmp_path / "config", LEASES)),
        DEVTEAM_WORKSPACES_ROOT=str(tmp_path / "workspaces"),
        DEVTEAM_LOG_LEVEL="WARNING",
        DEVTEAM_SHUTDOWN_GRACE_S=str(GRACE_S),
    )
    env[SCRIPT_VARIABLE] = json.dumps(SCRIPT)
    cluster = Cluster([], [], postgres_url, env, tmp_path)
    try:
        for _ in range(2):
            cluster.add_worker()
        for i in range(2):
            cluster.apis.append(
                Process(f"api{i}", ["serve", "--no-executors"], env, tmp_path / f"api{i}.log")
            )
        for process in cluster.processes():
            process.wait_ready()
        yield cluster
    finally:
        for process in cluster.processes():
            process.stop()


async def submit_roots(cluster: Cluster, roots: int) -> list[str]:
    """`roots` root tasks, half through each API, by two users."""
    ids: list[str] = []
    clients = []
    for i, api in enumerate(cluster.apis):
        username = f"user{i}"
        if username not in cluster.users:
            await create_user(cluster.postgres_url, username)
            cluster.users.add(username)
        client = httpx.AsyncClient(base_url=api.url, timeout=30)
        login = await client.post(
            "/api/v1/auth/token", data={"username": username, "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        clients.append(client)
    try:

        async def submit(n: int) -> str:
            response = await clients[n % 2].post(
                "/api/v1/tasks",
                json={"task": f"Build feature {n} of {roots}", "complexity": 3, "subtasks": PLAN},
            )
            assert response.status_code == 202, response.text
            return str(response.json()["id"])

        ids = list(await asyncio.gather(*(submit(n) for n in range(roots))))
    finally:
        for client in clients:
            await client.aclose()
    return ids


async def counts(url: str) -> dict[str, int]:
    """Subtasks by status."""
    connection = await asyncpg.connect(servers.asyncpg_url(url))
    try:
        rows = await connection.fetch(
            "SELECT status, count(*) AS n FROM tasks WHERE parent_id IS NOT NULL GROUP BY status"
        )
    finally:
        await connection.close()
    return {row["status"]: row["n"] for row in rows}


async def wait_until(url: str, predicate: Any, timeout: float, what: str) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = await counts(url)
        if predicate(seen):
            return seen
        await asyncio.sleep(0.2)  # the processes offer no event this test could await
    raise AssertionError(f"{what}: not within {timeout} s; subtasks by status: {seen}")


@dataclass
class History:
    roots: dict[str, str]
    """Root id -> status."""
    seqs: dict[str, list[int]]
    """Root id -> its event seqs in order."""
    subtask_events: dict[str, list[tuple[str, dict[str, Any]]]]
    """Subtask id -> (type, data) in seq order."""


async def history(url: str) -> History:
    connection = await asyncpg.connect(servers.asyncpg_url(url))
    try:
        roots = await connection.fetch("SELECT id, status FROM tasks WHERE parent_id IS NULL")
        events = await connection.fetch(
            "SELECT task_id, subtask_id, seq, type, data FROM events ORDER BY task_id, seq"
        )
    finally:
        await connection.close()
    seqs: dict[str, list[int]] = defaultdict(list)
    subtask_events: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for event in events:
        seqs[str(event["task_id"])].append(event["seq"])
        if event["subtask_id"] is not None:
            data = event["data"]
            subtask_events[str(event["subtask_id"])].append(
                (event["type"], json.loads(data) if isinstance(data, str) else data)
            )
    return History(
        roots={str(r["id"]): r["status"] for r in roots},
        seqs=dict(seqs),
        subtask_events=dict(subtask_events),
    )


def assert_nothing_lost_nothing_repeated(found: History, roots: list[str]) -> None:
    assert set(found.roots) == set(roots)
    assert set(found.roots.values()) == {"completed"}, found.roots
    for root in roots:
        seqs = found.seqs[root]
        assert seqs == list(range(1, len(seqs) + 1)), f"gap or duplicate in {root}: {seqs}"
    assert len(found.subtask_events) == 2 * len(roots)
    for subtask, events in found.subtask_events.items():
        types = [kind for kind, _ in events]
        assert types.count("task.completed") == 1, (subtask, types)
        # A completed subtask never starts again.
        assert "task.started" not in types[types.index("task.completed") :], (subtask, types)


def retried_with(found: History, code: str) -> int:
    return sum(
        1
        for events in found.subtask_events.values()
        for kind, data in events
        if kind == "task.retrying" and code in json.dumps(data)
    )


async def test_workers_killed_or_stopped_lose_nothing_and_repeat_nothing(
    cluster: Cluster,
) -> None:
    # 1. kill -9 a worker in the middle of 50 roots submitted through both APIs.
    roots = await submit_roots(cluster, 50)
    # Both workers busy and a good part done: the one killed holds running work.
    await wait_until(
        cluster.postgres_url,
        lambda c: c.get("in_progress", 0) >= 12 and c.get("completed", 0) >= 20,
        timeout=90,
        what="work under way on both workers",
    )
    cluster.workers[0].kill()
    await wait_until(
        cluster.postgres_url,
        lambda c: c.get("completed", 0) == 100,
        timeout=120,
        what="every subtask completed on the surviving worker",
    )
    found = await history(cluster.postgres_url)
    assert_nothing_lost_nothing_repeated(found, roots)
    taken_over = retried_with(found, "lease_expired")
    assert taken_over >= 1, "the kill hit no running work"
    assert retried_with(found, "worker_stopped") == 0

    # 2. SIGTERM a worker in the middle of 20 more: what it cannot finish within
    # its grace period is handed back (`worker_stopped`), not left to its leases.
    cluster.add_worker().wait_ready()
    roots += await submit_roots(cluster, 20)
    # Every `look` done (they end within a grace period): what runs now is `build`.
    await wait_until(
        cluster.postgres_url,
        lambda c: c.get("completed", 0) >= 120 and c.get("in_progress", 0) >= 12,
        timeout=90,
        what="long attempts under way on both live workers",
    )
    stopped = cluster.workers[1]
    assert stopped.terminate(timeout=30) == 0, stopped.log.read_text()
    await wait_until(
        cluster.postgres_url,
        lambda c: c.get("completed", 0) == 140,
        timeout=120,
        what="every subtask completed on the remaining worker",
    )
    found = await history(cluster.postgres_url)
    assert_nothing_lost_nothing_repeated(found, roots)
    assert retried_with(found, "worker_stopped") >= 1, "the stop handed nothing back"
    assert retried_with(found, "lease_expired") == taken_over
    assert cluster.workers[2].handle.poll() is None
