"""Factories for domain objects: `make_task(**overrides)` and friends."""

from __future__ import annotations

import uuid
from typing import Any

from devteam.domain.enums import Role, TaskStatus
from devteam.domain.tasks import Task, Usage
from devteam.domain.users import User
from devteam.storage import Store
from devteam.storage.types import utcnow


def make_task(created_by: uuid.UUID, **overrides: Any) -> Task:
    now = utcnow()
    task_id = overrides.pop("id", None) or uuid.uuid4()
    values: dict[str, Any] = {
        "id": task_id,
        "parent_id": None,
        "root_id": task_id,
        "key": None,
        "status": TaskStatus.PENDING,
        "agent_type": None,
        "task_type": "feature",
        "task": "Add a health endpoint to the service",
        "complexity": 3,
        "priority": 5,
        "project_id": None,
        "metadata": {},
        "phase": None,
        "depends_on": [],
        "require_approval": False,
        "budget": None,
        "attempt": 1,
        "version": 0,
        "created_by": created_by,
        "created_at": now,
        "updated_at": now,
        "started_at": None,
        "finished_at": None,
        "result": None,
        "error": None,
        "usage": Usage(),
    }
    values.update(overrides)
    return Task(**values)


async def create_user(
    store: Store, username: str | None = None, role: Role = Role.DEVELOPER
) -> User:
    async with store.transaction() as tx:
        return await tx.users.create(
            username or f"user-{uuid.uuid4().hex[:8]}", "not-a-real-hash", role
        )


async def create_root_task(store: Store, user: User, **overrides: Any) -> Task:
    task = make_task(user.id, **overrides)
    async with store.transaction() as tx:
        await tx.tasks.insert_many([task])
    return task
