"""The audit log: append-only; there is no update or delete here by design."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import sqlalchemy as sa

from devteam.domain.audit import AuditEntry, NewAuditEntry
from devteam.storage.database import driver_connection, on_driver
from devteam.storage.repositories._base import (
    Repository,
    json_records,
    pg_insert_records,
    pg_types,
)
from devteam.storage.tables import audit_log
from devteam.storage.types import utcnow

_INSERT = sa.insert(audit_log)
# On Postgres, entries written together go to asyncpg directly (see `driver_connection`),
# in one JSON parameter.
_COLUMNS = tuple(c.name for c in audit_log.c if c.name != "id")


_PG_TYPES = pg_types(audit_log, _COLUMNS)


def pg_append_records(param: int) -> str:
    """An insert of the audit entries in JSON parameter `$param` (see `audit_records`)."""
    return pg_insert_records("audit_log", _PG_TYPES, param)


def audit_records(entries: Sequence[NewAuditEntry]) -> str:
    """The parameter of `pg_append_records`."""
    return json_records((audit_row(entry) for entry in entries), times=("ts",))


_PG_APPEND = pg_append_records(1)


def audit_row(entry: NewAuditEntry) -> dict[str, object]:
    """The audit_log row of `entry`, stamped now."""
    # JSON-safe values for `details`; the UUID column takes the UUID itself.
    return {**entry.model_dump(mode="json"), "actor_id": entry.actor_id, "ts": utcnow()}


class AuditRepository(Repository):
    async def append(self, entry: NewAuditEntry) -> None:
        # JSON-safe values for `details`; the UUID column takes the UUID itself.
        # Parameters, not .values(): the statement stays one cached compiled form.
        await self.conn.execute(_INSERT, audit_row(entry))

    async def append_many(self, entries: Sequence[NewAuditEntry]) -> None:
        """`append` for several entries, in one statement."""
        if not entries:
            return
        if self.dialect == "postgresql":
            driver = await driver_connection(self.conn)
            call = driver.execute(_PG_APPEND, audit_records(entries))
            await on_driver(self.conn, call, _PG_APPEND)
        else:
            await self.conn.execute(_INSERT, [audit_row(entry) for entry in entries])

    async def list(
        self,
        *,
        actor: str | None = None,
        actor_id: UUID | None = None,
        action: str | None = None,
        resource_id: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[AuditEntry]:
        """Newest first; pass the last `id` seen as `before_id` for the next page."""
        query = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if actor is not None:
            query = query.where(audit_log.c.actor == actor)
        if actor_id is not None:
            query = query.where(audit_log.c.actor_id == actor_id)
        if action is not None:
            query = query.where(audit_log.c.action == action)
        if resource_id is not None:
            query = query.where(audit_log.c.resource_id == resource_id)
        if before_id is not None:
            query = query.where(audit_log.c.id < before_id)
        return [AuditEntry.model_validate(row._mapping) for row in await self.conn.execute(query)]
