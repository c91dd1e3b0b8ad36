"""Durability: kill -9 the process in the middle of a task and start it again.

The task finishes, no completed subtask runs again, and the root task's event
sequence is 1..N with no gap — on SQLite with the in-process broker (whose queue
dies with the process and is rebuilt from the database) and on Postgres with
Redis (where the dead consumer's messages are reclaimed).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devteam.broker.memory import MemoryBroker
from devteam.broker.redis import RedisBroker
from devteam.domain.enums import Role, TaskStatus
from devteam.domain.tasks import TaskRequest
from devteam.orchestration.team_leader import TeamLeader
from devteam.settings.team_leader import TeamLeaderConfig
from devteam.storage import Database, Store
from tests import servers
from tests.factories import create_user

REPO = Path(__file__).resolve().parents[3]
S = TaskStatus

pytestmark = pytest.mark.slow

RULES = """
leases: {duration_s: 1.5, heartbeat_s: 0.3, recovery_interval_s: 0.3}
retry: {initial_interval_s: 0.05, maximum_interval_s: 0.2}
"""

CHAIN = [
    {
        "key": f"step{i}",
        "agent_type": "backend",
        "task": f"Do step number {i}",
        "complexity": 1,
        "depends_on": [f"step{i - 1}"] if i else [],
    }
    for i in range(6)
]


class Worker:
    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.team_leader_process"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        assert line.strip() == "ready", line + self.process.stdout.read().decode()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite+memory"),
        pytest.param(
            "postgres", id="postgres+redis", marks=[pytest.mark.postgres, pytest.mark.redis]
        ),
    ]
)
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> dict[str, str]:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "team_leader.yaml").write_text(RULES)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVTEAM_")}
    env.update(
        DEVTEAM_CONFIG_DIR=str(config_dir),
        DEVTEAM_MIGRATE_ON_START="false",
        TEST_AGENT_LOG=str(tmp_path / "agents.log"),
        TEST_AGENT_SLEEP="0.3",
        PYTHONPATH=str(REPO),
    )
    if request.param == "sqlite":
        env["DEVTEAM_DATABASE_URL"] = servers.copy_sqlite(sqlite_template, tmp_path / "crash.db")
    else:
        url = request.getfixturevalue("postgres_url")
        servers.truncate_postgres(url)
        env["DEVTEAM_DATABASE_URL"] = url
        env["DEVTEAM_REDIS_URL"] = request.getfixturevalue("redis_url")
        env["DEVTEAM_REDIS_PREFIX"] = request.getfixturevalue("redis_prefix")
    return env


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


async def statuses(store: Store, root_id: Any) -> dict[str, TaskStatus]:
    async with store.read() as tx:
        children = await tx.tasks.children(root_id)
    return {c.key or "": c.status for c in children}


async def wait_until(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_kill_9_in_the_middle_of_a_task(
    backend: dict[str, str], workers: list[Worker]
) -> None:
    store = Store(Database(backend["DEVTEAM_DATABASE_URL"]))
    broker = (
        RedisBroker(backend["DEVTEAM_REDIS_URL"], prefix=backend["DEVTEAM_REDIS_PREFIX"])
        if "DEVTEAM_REDIS_URL" in backend
        else MemoryBroker()
    )
    try:
        user = await create_user(store, role=Role.DEVELOPER)
        submitter = TeamLeader(store=store, broker=broker, config=TeamLeaderConfig())
        request = TaskRequest(task="Six steps in a row", complexity=6, subtasks=CHAIN)
        root = (await submitter.submit(request, user)).task

        workers.append(Worker(backend))

        async def two_done_one_running() -> bool:
            now = await statuses(store, root.id)
            done = sum(1 for s in now.values() if s == S.COMPLETED)
            return done >= 2 and S.IN_PROGRESS in now.values()

        await wait_until(two_done_one_running)
        workers[0].kill()
        at_kill = await statuses(store, root.id)
        completed_at_kill = {k for k, s in at_kill.items() if s == S.COMPLETED}
        running_at_kill = {k for k, s in at_kill.items() if s == S.IN_PROGRESS}
        log = Path(backend["TEST_AGENT_LOG"])
        lines_at_kill = len(log.read_text().splitlines())

        workers.append(Worker(backend))

        async def finished() -> bool:
            async with store.read() as tx:
                task = await tx.tasks.get(root.id)
            return task is not None and task.status.is_terminal

        await wait_until(finished)
        async with store.read() as tx:
            final = await tx.tasks.get(root.id)
            events = await tx.events.list_after(root.id, 0, 10_000)
    finally:
        await broker.close()
        await store.close()

    assert final is not None
    assert final.status == S.COMPLETED, final.error
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    after_kill = runs[lines_at_kill:]
    # No completed subtask ran again; the one cut off ran again as a new attempt.
    assert not [r for r in after_kill if r["key"] in completed_at_kill]
    for key in running_at_kill:
        assert any(r["key"] == key and r["attempt"] >= 2 for r in after_kill)
    # Every step completed exactly once in the end, in order.
    ends = [r["key"] for r in runs if r["event"] == "end"]
    assert set(ends) == {s["key"] for s in CHAIN}
    # The history is whole: 1..N, no gap, and it ends with the root's completion.
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[-1].type == "task.completed"
    assert events[-1].subtask_id is None
