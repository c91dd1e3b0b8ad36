"""Idempotency keys of task submissions."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from devteam.storage.repositories._base import Repository
from devteam.storage.tables import idempotency_keys
from devteam.storage.types import utcnow


class IdempotencyRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    user_id: UUID
    key: str
    request_hash: str
    task_id: UUID
    created_at: datetime
    expires_at: datetime


class IdempotencyRepository(Repository):
    async def get(self, user_id: UUID, key: str) -> IdempotencyRecord | None:
        """The live record of `key`; an expired one counts as absent."""
        row = (
            await self.conn.execute(
                sa.select(idempotency_keys).where(
                    idempotency_keys.c.user_id == user_id,
                    idempotency_keys.c.key == key,
                    idempotency_keys.c.expires_at > utcnow(),
                )
            )
        ).first()
        return IdempotencyRecord.model_validate(row._mapping) if row else None

    async def put(
        self, user_id: UUID, key: str, request_hash: str, task_id: UUID, ttl: timedelta
    ) -> None:
        """Record `key`, replacing an expired record of the same key."""
        now = utcnow()
        await self.conn.execute(
            sa.delete(idempotency_keys).where(
                idempotency_keys.c.user_id == user_id,
                idempotency_keys.c.key == key,
                idempotency_keys.c.expires_at <= now,
            )
        )
        await self.conn.execute(
            sa.insert(idempotency_keys).values(
                user_id=user_id,
                key=key,
                request_hash=request_hash,
                task_id=task_id,
                created_at=now,
                expires_at=now + ttl,
            )
        )

    async def delete_expired(self) -> int:
        result = await self.conn.execute(
            sa.delete(idempotency_keys).where(idempotency_keys.c.expires_at <= utcnow())
        )
        return result.rowcount
