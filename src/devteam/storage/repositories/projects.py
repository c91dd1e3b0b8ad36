"""Projects the service cloned (repositories placed by hand are not stored)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from devteam.domain.enums import TERMINAL_STATUSES
from devteam.domain.errors import Conflict
from devteam.domain.projects import Project, ProjectState
from devteam.storage.repositories._base import Repository
from devteam.storage.tables import projects, tasks
from devteam.storage.types import utcnow


class ProjectRepository(Repository):
    async def create(
        self, name: str, git_url: str, default_branch: str | None, created_by: UUID | None
    ) -> Project:
        now = utcnow()
        values: dict[str, Any] = {
            "name": name,
            "git_url": git_url,
            "default_branch": default_branch,
            "state": ProjectState.CLONING.value,
            "error": None,
            "created_by": created_by,
            "created_at": now,
            "updated_at": now,
            "refreshed_at": None,
        }
        try:
            async with self.conn.begin_nested():
                await self.conn.execute(sa.insert(projects).values(values))
        except IntegrityError:
            raise Conflict(f"project {name!r} already exists") from None
        return Project.model_validate(values)

    async def get(self, name: str) -> Project | None:
        row = (await self.conn.execute(sa.select(projects).where(projects.c.name == name))).first()
        return Project.model_validate(row._mapping) if row is not None else None

    async def list(self) -> list[Project]:
        rows = await self.conn.execute(sa.select(projects).order_by(projects.c.name))
        return [Project.model_validate(row._mapping) for row in rows]

    async def update(self, name: str, **values: Any) -> Project | None:
        """Set `values` (state, error, refreshed_at, ...); the project as it is now."""
        if isinstance(values.get("state"), ProjectState):
            values["state"] = values["state"].value
        row = (
            await self.conn.execute(
                sa.update(projects)
                .where(projects.c.name == name)
                .values(**values, updated_at=utcnow())
                .returning(*projects.c)
            )
        ).first()
        return Project.model_validate(row._mapping) if row is not None else None

    async def delete(self, name: str) -> bool:
        result = await self.conn.execute(sa.delete(projects).where(projects.c.name == name))
        return bool(result.rowcount)

    async def unfinished_tasks(self, name: str) -> int:
        """Tasks of the project that have not finished (they may be using its checkout)."""
        count = await self.conn.scalar(
            sa.select(sa.func.count())
            .select_from(tasks)
            .where(
                tasks.c.project_id == name,
                tasks.c.status.not_in([s.value for s in TERMINAL_STATUSES]),
            )
        )
        return int(count or 0)
