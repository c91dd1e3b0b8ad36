"""The audit log: append-only; there is no update or delete here by design."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import sqlalchemy as sa

from devteam.domain.audit import AuditEntry, NewAuditEntry
from devteam.storage.database import driver_connection, on_driver
from devteam.storage.repositories._base import (
    Repository,
    pg_array_types,
    pg_insert_unnest,
    transposed,
)
from devteam.storage.tables import audit_log
from devteam.storage.types import aware, utcnow

_INSERT = sa.insert(audit_log)
# On Postgres, entries written together go to asyncpg directly (see `driver_connection`).
_COLUMNS = tuple(c.name for c in audit_log.c if c.name != "id")
_PG_INSERT = (
    f"INSERT INTO audit_log ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(_COLUMNS) + 1))})"
)


_PG_ARRAY_TYPES = pg_array_types(audit_log, _COLUMNS)
AUDIT_ARRAYS = len(_COLUMNS)
"""How many parameters `pg_append_arrays` takes."""


def pg_append_arrays(first: int) -> str:
    """An insert of audit entries whose every column is one array parameter, numbered
    from `first` (for a statement that does more; see `audit_arrays`)."""
    return pg_insert_unnest("audit_log", _COLUMNS, _PG_ARRAY_TYPES, first)


def audit_arrays(entries: Sequence[NewAuditEntry]) -> list[list[object]]:
    """The parameters of `pg_append_arrays`: one list per column."""
    rows = [audit_row(entry) for entry in entries]
    return transposed([[_driver_value(c, r[c]) for c in _COLUMNS] for r in rows], len(_COLUMNS))


def audit_row(entry: NewAuditEntry) -> dict[str, object]:
    """The audit_log row of `entry`, stamped now."""
    # JSON-safe values for `details`; the UUID column takes the UUID itself.
    return {**entry.model_dump(mode="json"), "actor_id": entry.actor_id, "ts": utcnow()}


def _driver_value(column: str, value: object) -> object:
    # As SQLAlchemy's column types would convert it: `details` serialized, `ts` UTC.
    if column == "details":
        return json.dumps(value)
    if column == "ts":
        assert isinstance(value, datetime)
        return aware(value)
    return value


class AuditRepository(Repository):
    async def append(self, entry: NewAuditEntry) -> None:
        # JSON-safe values for `details`; the UUID column takes the UUID itself.
        # Parameters, not .values(): the statement stays one cached compiled form.
        await self.conn.execute(_INSERT, audit_row(entry))

    async def append_many(self, entries: Sequence[NewAuditEntry]) -> None:
        """`append` for several entries, in one statement."""
        if not entries:
            return
        rows = [audit_row(entry) for entry in entries]
        if self.dialect == "postgresql":
            params = [[_driver_value(c, r[c]) for c in _COLUMNS] for r in rows]
            driver = await driver_connection(self.conn)
            await on_driver(self.conn, driver.executemany(_PG_INSERT, params), _PG_INSERT)
        else:
            await self.conn.execute(_INSERT, rows)

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
