"""The rules engine on a real store and broker, with tasks laid out by hand."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any
from uuid import UUID

from devteam.broker.memory import MemoryBroker
from devteam.domain.enums import AgentType, Phase, TaskStatus
from devteam.domain.events import Event
from devteam.domain.tasks import Budget, Task
from devteam.domain.users import User
from devteam.orchestration.clock import ManualClock
from devteam.orchestration.effects import BrokerEffects
from devteam.orchestration.engine import Engine, TransitionResult
from devteam.orchestration.policy import default_policy
from devteam.orchestration.queue import PRIORITY_QUEUES
from devteam.orchestration.rules.base import Policy, TransitionRequest
from devteam.settings.team_leader import TeamLeaderConfig
from devteam.storage import Store
from tests.factories import make_task

S = TaskStatus


class EngineEnv:
    """An engine over `store`, and helpers to build trees of tasks in any state."""

    def __init__(
        self,
        store: Store,
        user: User,
        policy: Policy | None = None,
        config: TeamLeaderConfig | None = None,
    ) -> None:
        self.store = store
        self.user = user
        self.broker = MemoryBroker()
        self.clock = ManualClock()
        self.config = config or TeamLeaderConfig()
        self.effects = BrokerEffects(self.broker, self.clock)
        self.engine = Engine(
            store, policy or default_policy(), lambda: self.config, self.clock, self.effects
        )

    def with_policy(self, policy: Policy) -> EngineEnv:
        env = EngineEnv(self.store, self.user, policy, self.config)
        env.clock = self.clock
        env.engine.clock = self.clock
        return env

    async def tree(
        self, root: dict[str, Any] | None = None, *children: dict[str, Any]
    ) -> tuple[Task, list[Task]]:
        """A root task and children (each a dict of field overrides; `deps` by key)."""
        now = self.clock.now()
        root_task = make_task(
            self.user.id,
            created_at=now,
            updated_at=now,
            **{"status": S.DELEGATED if children else S.IN_PROGRESS, **(root or {})},
        )
        keys = {c["key"]: uuid.uuid4() for c in children}
        rows = [root_task]
        for i, child in enumerate(children):
            fields = dict(child)
            deps = [keys[k] for k in fields.pop("deps", [])]
            fields.setdefault("agent_type", AgentType.BACKEND)
            fields.setdefault("phase", Phase.IMPLEMENTATION)
            fields.setdefault("status", S.PENDING)
            rows.append(
                make_task(
                    self.user.id,
                    id=keys[fields["key"]],
                    parent_id=root_task.id,
                    root_id=root_task.id,
                    depends_on=deps,
                    created_at=now + timedelta(microseconds=i + 1),
                    updated_at=now,
                    **fields,
                )
            )
        async with self.store.transaction() as tx:
            await tx.tasks.insert_many(rows)
        return rows[0], rows[1:]

    async def move(self, task: Task | UUID, to: TaskStatus, **updates: Any) -> TransitionResult:
        task_id = task if isinstance(task, UUID) else task.id
        (result,) = await self.engine.transition_many(
            [TransitionRequest(task_id, to, updates=updates)]
        )
        return result

    async def get(self, task: Task | UUID) -> Task:
        task_id = task if isinstance(task, UUID) else task.id
        async with self.store.read() as tx:
            found = await tx.tasks.get(task_id)
        assert found is not None
        return found

    async def events(self, root: Task) -> list[Event]:
        async with self.store.read() as tx:
            return await tx.events.list_after(root.id, 0, 1000)

    async def queued(self) -> int:
        total = 0
        for queue in PRIORITY_QUEUES:
            depth = await self.broker.queue.depth(queue)
            total += depth.ready
        return total


def lease(env: EngineEnv, seconds: float = 30) -> dict[str, Any]:
    return {"lease_owner": "w1", "lease_expires_at": env.clock.now() + timedelta(seconds=seconds)}


def budget(**values: Any) -> Budget:
    return Budget(**values)
