"""Tasks: root tasks and their subtasks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from devteam.domain.tasks import Budget, Task, TaskError, Usage
from devteam.storage.repositories._base import Repository
from devteam.storage.tables import tasks


def task_from_row(row: RowMapping | Mapping[str, Any]) -> Task:
    error = (
        TaskError(code=row["error_code"], message=row["error_message"] or "")
        if row["error_code"]
        else None
    )
    return Task(
        id=row["id"],
        parent_id=row["parent_id"],
        root_id=row["root_id"],
        key=row["key"],
        status=row["status"],
        agent_type=row["agent_type"],
        task_type=row["task_type"],
        task=row["task"],
        complexity=row["complexity"],
        priority=row["priority"],
        project_id=row["project_id"],
        metadata=row["metadata"],
        phase=row["phase"],
        depends_on=[UUID(d) for d in row["depends_on"]],
        require_approval=row["require_approval"],
        budget=Budget.model_validate(row["budget"]) if row["budget"] else None,
        attempt=row["attempt"],
        version=row["version"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        result=row["result"],
        error=error,
        usage=Usage(
            requests=row["usage_requests"],
            input_tokens=row["usage_input_tokens"],
            output_tokens=row["usage_output_tokens"],
            tool_calls=row["usage_tool_calls"],
            cost_usd=row["cost_usd"],
        ),
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        not_before=row["not_before"],
        queued_at=row["queued_at"],
        deadline_at=row["deadline_at"],
    )


def task_to_row(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "root_id": task.root_id,
        "parent_id": task.parent_id,
        "key": task.key,
        "created_by": task.created_by,
        "status": task.status.value,
        "agent_type": task.agent_type.value if task.agent_type else None,
        "task_type": task.task_type,
        "task": task.task,
        "complexity": task.complexity,
        "priority": task.priority,
        "project_id": task.project_id,
        "metadata": task.metadata,
        "phase": task.phase.value if task.phase else None,
        "depends_on": [str(d) for d in task.depends_on],
        "require_approval": task.require_approval,
        "budget": task.budget.model_dump(exclude_none=True) if task.budget else None,
        "attempt": task.attempt,
        "version": task.version,
        "result": task.result,
        "error_code": task.error.code if task.error else None,
        "error_message": task.error.message if task.error else None,
        "usage_requests": task.usage.requests,
        "usage_input_tokens": task.usage.input_tokens,
        "usage_output_tokens": task.usage.output_tokens,
        "usage_tool_calls": task.usage.tool_calls,
        "cost_usd": task.usage.cost_usd,
        "lease_owner": task.lease_owner,
        "lease_expires_at": task.lease_expires_at,
        "not_before": task.not_before,
        "queued_at": task.queued_at,
        "deadline_at": task.deadline_at,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
    }


class TaskRepository(Repository):
    async def insert_many(self, new: Sequence[Task]) -> None:
        """Insert tasks; parents must come before their children."""
        if new:
            await self.conn.execute(sa.insert(tasks), [task_to_row(t) for t in new])

    async def get(self, task_id: UUID, *, for_update: bool = False) -> Task | None:
        query = sa.select(tasks).where(tasks.c.id == task_id)
        if for_update:
            query = query.with_for_update()
        row = (await self.conn.execute(query)).first()
        return task_from_row(row._mapping) if row else None

    async def children(self, parent_id: UUID) -> list[Task]:
        rows = await self.conn.execute(
            sa.select(tasks).where(tasks.c.parent_id == parent_id).order_by(tasks.c.created_at)
        )
        return [task_from_row(row._mapping) for row in rows]
