"""A TeamLeader in this process, on a benchmark environment, and ways to drive it."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from benchmarks.common import Environment
from devteam.broker.channels import decode_events, events_channel
from devteam.broker.factory import create_broker
from devteam.broker.protocol import Broker
from devteam.domain.agents import Agent
from devteam.domain.enums import AgentType, Role, TaskStatus
from devteam.domain.tasks import Task, TaskRequest
from devteam.domain.users import User
from devteam.heap import settle_heap
from devteam.orchestration.team_leader import TeamLeader
from devteam.settings.team_leader import TeamLeaderConfig
from devteam.storage import Database, Store

FINISHED = ("completed", "failed", "cancelled")
TERMINAL_EVENTS = ("task.completed", "task.failed", "task.cancelled")
_TERMINAL_BYTES = tuple(f'"{name}"'.encode() for name in TERMINAL_EVENTS)


def rules(global_limit: int) -> TeamLeaderConfig:
    return TeamLeaderConfig.model_validate(
        {
            "concurrency": {"global": global_limit, "per_user": global_limit},
            "complexity": {"budget_per_root": 100, "max_per_task": 5},
        }
    )


@dataclass
class Bench:
    store: Store
    broker: Broker
    leader: TeamLeader
    user: User


@contextlib.asynccontextmanager
async def running_leader(
    env: Environment,
    agents: Mapping[AgentType, Agent],
    *,
    global_limit: int,
    start: bool = True,
) -> AsyncIterator[Bench]:
    store = Store(Database(env.database_url, pool_size=20))
    broker = create_broker(env.redis_url, prefix=env.redis_prefix)
    async with store.transaction() as tx:
        user = await tx.users.create(f"bench-{uuid.uuid4().hex[:8]}", "-", Role.DEVELOPER)
    leader = TeamLeader(store=store, broker=broker, config=rules(global_limit), agents=agents)
    # The collector as `devteam serve` and `devteam worker` set it after start-up.
    settle_heap()
    if start:
        await leader.start(concurrency=global_limit)
    try:
        yield Bench(store, broker, leader, user)
    finally:
        await leader.stop(grace=5)
        await broker.close()
        await store.close()


def flat_plan(subtasks: int) -> list[dict[str, Any]]:
    """Independent subtasks of one phase: all ready at once."""
    return [
        {
            "key": f"s{i}",
            "agent_type": "backend",
            "task": f"Step number {i} of the plan",
            "complexity": 1,
        }
        for i in range(subtasks)
    ]


async def submit_roots(bench: Bench, roots: int, subtasks: int) -> list[Task]:
    request = TaskRequest(
        task="A benchmark task with a flat plan",
        complexity=min(subtasks, 10),
        subtasks=flat_plan(subtasks),
    )
    submitted = await asyncio.gather(
        *(bench.leader.submit(request, bench.user) for _ in range(roots))
    )
    return [s.task for s in submitted]


async def wait_finished(bench: Bench, root_ids: list[Any], timeout: float = 600) -> float:
    """Wait, on live events, until every root has finished; returns when (perf_counter).

    Subscribes first and reads the statuses once after, so nothing is missed and
    the waiting costs no polling.
    """
    pending = set(root_ids)
    finished_at = 0.0
    all_done = asyncio.Event()

    def on_events(raw: bytes) -> None:
        nonlocal finished_at
        # Only a message that names an end is read: the waiting should cost as little
        # as it can while what it waits for runs.
        if not any(end in raw for end in _TERMINAL_BYTES):
            return
        for event in decode_events(raw):
            if event.subtask_id is None and event.type.value in TERMINAL_EVENTS:
                pending.discard(event.task_id)
        if not pending and not all_done.is_set():
            finished_at = time.perf_counter()
            all_done.set()

    subscriptions = [
        await bench.broker.pubsub.subscribe(events_channel(root_id), on_events)
        for root_id in root_ids
    ]
    try:
        async with bench.store.read_statement() as tx:
            statuses = await tx.tasks.statuses(root_ids)
        pending.difference_update(r for r, status in statuses.items() if status in FINISHED)
        if not pending:
            return time.perf_counter()
        await asyncio.wait_for(all_done.wait(), timeout)
        return finished_at
    finally:
        for subscription in subscriptions:
            await subscription.close()


async def children_of(bench: Bench, root_ids: list[Any]) -> list[Task]:
    children: list[Task] = []
    async with bench.store.read() as tx:
        for root_id in root_ids:
            children += await tx.tasks.children(root_id)
    return children


def failed(tasks: list[Task]) -> list[Task]:
    return [t for t in tasks if t.status != TaskStatus.COMPLETED]
