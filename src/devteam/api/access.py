"""The one way routes find a task for a caller: 404 unless it exists and they may read it.

A task is readable by whoever may read its root task (the submitter's, or any with
`tasks:read:any`), so a subtask, its events and its webhooks follow the root.
"""

from __future__ import annotations

from uuid import UUID

from devteam.domain.errors import NotFound
from devteam.domain.permissions import TASKS_READ
from devteam.domain.tasks import Task
from devteam.security import Principal, authorize_owned
from devteam.storage import UnitOfWork


async def task_and_root(tx: UnitOfWork, task_id: UUID) -> tuple[Task, Task] | None:
    """The task and its root task (the same for a root), or None."""
    task = await tx.tasks.get(task_id)
    if task is None:
        return None
    root = task if task.parent_id is None else await tx.tasks.get(task.root_id)
    return (task, root) if root is not None else None


async def readable_task(tx: UnitOfWork, caller: Principal, task_id: UUID) -> tuple[Task, Task]:
    """The task and its root, or `NotFound` when it is missing or the caller may not
    read it (never 403, so existence does not leak)."""
    found = await task_and_root(tx, task_id)
    if found is None:
        raise NotFound(f"task {task_id} not found")
    task, root = found
    authorize_owned(caller, root.created_by, TASKS_READ, resource=f"task {task_id}")
    return task, root
