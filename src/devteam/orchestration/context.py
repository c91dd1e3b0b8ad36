"""What a running agent sees: its dependencies' results, and a way to report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from devteam.domain.enums import TaskStatus
from devteam.domain.events import EventType, NewEvent
from devteam.domain.tasks import Task, TaskResult, TaskSpec, Usage, phase_rank, phase_ranks
from devteam.orchestration.engine import Engine
from devteam.orchestration.rules.base import Tree
from devteam.settings.team_leader import TeamLeaderConfig


class ExecutionContext:
    """The `AgentContext` of one attempt."""

    def __init__(
        self,
        engine: Engine,
        task: Task,
        dependencies: Mapping[str, TaskResult],
    ) -> None:
        self._engine = engine
        self._task = task
        self._dependencies = dict(dependencies)
        self.usage = Usage()

    @property
    def dependencies(self) -> Mapping[str, TaskResult]:
        return self._dependencies

    async def progress(self, message: str, **data: Any) -> None:
        await self._emit(EventType.TASK_PROGRESS, message=message, **data)

    async def tool_call(self, server: str, tool: str, outcome: str, **data: Any) -> None:
        await self._emit(EventType.TOOL_CALL, server=server, tool=tool, outcome=outcome, **data)

    def add_usage(self, usage: Usage) -> None:
        self.usage = self.usage + usage

    async def record(self, type: EventType, **data: Any) -> None:
        await self._emit(type, **data)

    async def _emit(self, type: EventType, **data: Any) -> None:
        subtask = None if self._task.parent_id is None else self._task.id
        data.setdefault("key", self._task.key)
        await self._engine.append_events(
            self._task.root_id, [NewEvent(type=type, subtask_id=subtask, data=data)]
        )


def dependency_results(task: Task, tree: Tree, phases: Sequence[str]) -> dict[str, TaskResult]:
    """Results an agent works from: what it depends on and what earlier phases produced."""
    if task.parent_id is None:
        return {}
    wanted: set[UUID] = set(task.depends_on)
    ranks = phase_ranks(phases)
    mine = phase_rank(task, ranks)
    for sibling in tree.children(task.parent_id):
        if sibling.phase != task.phase and phase_rank(sibling, ranks) < mine:
            wanted.add(sibling.id)
    results = {}
    for task_id in wanted:
        dep = tree.tasks.get(task_id)
        if dep is not None and dep.status == TaskStatus.COMPLETED and dep.result is not None:
            results[dep.key or str(dep.id)] = TaskResult.model_validate(dep.result)
    return results


def attempt_deadline(task: Task, tree: Tree, config: TeamLeaderConfig, now: datetime) -> datetime:
    """When this attempt must end: the attempt timeout, capped by the task's deadline."""
    deadline = now + timedelta(seconds=config.timeouts.attempt_s)
    root_deadline = tree.root.deadline_at
    if root_deadline is not None:
        deadline = min(deadline, root_deadline)
    return deadline


def build_spec(task: Task, tree: Tree, config: TeamLeaderConfig, now: datetime) -> TaskSpec:
    root = tree.root
    max_tokens = max_cost = None
    if root.budget is not None:
        if root.budget.max_tokens is not None:
            max_tokens = max(root.budget.max_tokens - root.usage.total_tokens, 0)
        if root.budget.max_cost_usd is not None:
            max_cost = max(root.budget.max_cost_usd - root.usage.cost_usd, 0.0)
    assert task.agent_type is not None
    return TaskSpec(
        id=task.id,
        root_id=task.root_id,
        parent_id=task.parent_id,
        key=task.key,
        agent_type=task.agent_type,
        task_type=task.task_type,
        task=task.task,
        root_task=root.task,
        complexity=task.complexity,
        priority=task.priority,
        project_id=task.project_id,
        metadata=task.metadata,
        phase=task.phase,
        attempt=task.attempt,
        created_by=task.created_by,
        deadline=attempt_deadline(task, tree, config, now),
        max_tokens=max_tokens,
        max_cost_usd=max_cost,
    )
