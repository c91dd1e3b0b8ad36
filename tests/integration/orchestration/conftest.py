"""A TeamLeader with scripted agents, on each storage and broker backend pair."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID

import pytest

from devteam.broker.channels import events_channel
from devteam.broker.memory import MemoryBroker
from devteam.broker.protocol import Broker
from devteam.broker.redis import RedisBroker
from devteam.domain.enums import TERMINAL_STATUSES, Role, TaskStatus
from devteam.domain.events import Event
from devteam.domain.tasks import Task, TaskRequest
from devteam.domain.users import User
from devteam.orchestration.team_leader import TeamLeader
from devteam.settings.team_leader import TeamLeaderConfig
from devteam.storage import Database, Store
from tests import servers
from tests.factories import create_user
from tests.fakes.agents import ScriptBook

# SQLite with the in-process broker (embedded) and Postgres with Redis (scale-out).
BACKEND_PAIRS = [
    pytest.param(("sqlite", "memory"), id="sqlite+memory"),
    pytest.param(
        ("postgres", "redis"), id="postgres+redis", marks=[pytest.mark.postgres, pytest.mark.redis]
    ),
]

FAST = {
    "retry": {"initial_interval_s": 0.05, "maximum_interval_s": 0.2},
    "leases": {"duration_s": 2.0, "heartbeat_s": 0.5, "recovery_interval_s": 0.5},
}


def config(**overrides: Any) -> TeamLeaderConfig:
    """The default rules with fast retries and leases, and any overrides (nested dicts)."""
    data: dict[str, Any] = {k: dict(v) for k, v in FAST.items()}
    for key, value in overrides.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    return TeamLeaderConfig.model_validate(data)


Backends = tuple[str, Callable[[], Broker]]


@pytest.fixture(params=BACKEND_PAIRS)
def backends(request: pytest.FixtureRequest, tmp_path: Any, sqlite_template: Any) -> Backends:
    """A database URL and a way to connect to the broker (again, after a restart)."""
    storage, broker_kind = request.param
    if storage == "sqlite":
        url = servers.copy_sqlite(sqlite_template, tmp_path / "devteam.db")
    else:
        url = request.getfixturevalue("postgres_url")
        servers.truncate_postgres(url)
    if broker_kind == "memory":
        return url, MemoryBroker
    redis_url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")
    return url, lambda: RedisBroker(redis_url, prefix=prefix)


@pytest.fixture
def script() -> ScriptBook:
    return ScriptBook()


class Harness:
    """A TeamLeader under test, and ways to wait for what it does."""

    def __init__(self, leader: TeamLeader, user: User, script: ScriptBook) -> None:
        self.leader = leader
        self.user = user
        self.script = script
        self.store = leader.store

    async def submit(self, **fields: Any) -> Task:
        fields.setdefault("task", "Build the feature the test asks for")
        fields.setdefault("complexity", 3)
        submission = await self.leader.submit(TaskRequest(**fields), self.user)
        return submission.task

    async def task(self, task_id: UUID) -> Task:
        async with self.store.read() as tx:
            task = await tx.tasks.get(task_id)
        assert task is not None
        return task

    async def children(self, task_id: UUID) -> list[Task]:
        async with self.store.read() as tx:
            return await tx.tasks.children(task_id)

    async def events(self, root_id: UUID) -> list[Event]:
        async with self.store.read() as tx:
            return await tx.events.list_after(root_id, 0, limit=10_000)

    async def wait_for(
        self,
        task_id: UUID,
        statuses: set[TaskStatus] | TaskStatus = TERMINAL_STATUSES,  # type: ignore[assignment]
        timeout: float = 20.0,
    ) -> Task:
        """Wait, on the task's live events, until it reaches one of `statuses`."""
        wanted = {statuses} if isinstance(statuses, TaskStatus) else set(statuses)
        task = await self.task(task_id)
        changed = asyncio.Event()
        subscription = await self.leader.broker.pubsub.subscribe(
            events_channel(task.root_id), lambda _: changed.set()
        )
        try:
            async with asyncio.timeout(timeout):
                while True:
                    task = await self.task(task_id)
                    if task.status in wanted:
                        return task
                    changed.clear()
                    # The status is re-read after each event; the poll bounds a missed wake-up.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), 0.5)
        finally:
            await subscription.close()


@pytest.fixture
def make_harness(backends: Backends, script: ScriptBook) -> Callable[..., Any]:
    """`async with make_harness(rules, executors=1) as h`: a running TeamLeader."""
    url, connect = backends

    @contextlib.asynccontextmanager
    async def make(
        rules: TeamLeaderConfig | None = None,
        *,
        executors: int = 1,
        start: bool = True,
        user: User | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[Harness]:
        store = Store(Database(url))
        broker = connect()
        if user is None:
            user = await create_user(store, role=Role.DEVELOPER)
        leader = TeamLeader(
            store=store,
            broker=broker,
            config=rules or config(),
            agents=kwargs.pop("agents", None) or script.agents(),
            **kwargs,
        )
        if start:
            await leader.start(executors=executors)
        try:
            yield Harness(leader, user, script)
        finally:
            await leader.stop(grace=0.5)
            await broker.close()
            await store.close()

    return make


def event_types(events: list[Event], subtask: UUID | None = None) -> list[str]:
    return [e.type.value for e in events if e.subtask_id == subtask]
