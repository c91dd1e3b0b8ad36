"""The outbox of webhook deliveries: written with the task's ending, claimed by dispatchers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from devteam.domain.webhooks import (
    DeliveryAttempt,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEvent,
)
from devteam.storage.repositories._base import Repository
from devteam.storage.tables import webhook_deliveries as table

HISTORY_KEPT = 50
"""Attempts kept per delivery (the latest)."""


@dataclass(frozen=True)
class Claimed:
    """A delivery a dispatcher holds the lease of."""

    delivery: WebhookDelivery
    payload: str | None
    """The body as sent before; None until the first attempt."""


@dataclass(frozen=True)
class Outcome:
    """The result of one attempt, to record."""

    attempt: DeliveryAttempt
    status: DeliveryStatus
    next_attempt_at: datetime | None
    payload: str


def delivery_from_row(row: RowMapping | Mapping[str, Any]) -> WebhookDelivery:
    return WebhookDelivery(
        id=row["id"],
        task_id=row["task_id"],
        event=row["event"],
        url=row["url"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        delivered_at=row["delivered_at"],
        history=[DeliveryAttempt.model_validate(a) for a in row["history"]],
    )


class WebhookRepository(Repository):
    async def add(
        self, delivery_id: UUID, task_id: UUID, event: WebhookEvent, url: str, now: datetime
    ) -> None:
        """A delivery due now (in the transaction that ends the task)."""
        await self.conn.execute(
            sa.insert(table).values(
                id=delivery_id,
                task_id=task_id,
                event=event.value,
                url=url,
                status=DeliveryStatus.PENDING.value,
                attempts=0,
                next_attempt_at=now,
                history=[],
                created_at=now,
            )
        )

    async def for_task(self, task_id: UUID) -> list[WebhookDelivery]:
        rows = await self.conn.execute(
            sa.select(table).where(table.c.task_id == task_id).order_by(table.c.created_at)
        )
        return [delivery_from_row(row._mapping) for row in rows]

    async def any_due(self, now: datetime) -> bool:
        """Whether a delivery may be claimed now (a cheap read before a write)."""
        found = await self.conn.scalar(sa.select(table.c.id).where(*self._claimable(now)).limit(1))
        return found is not None

    async def claim(
        self, owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[Claimed]:
        """Take the lease of up to `limit` due deliveries, oldest first.

        On Postgres, rows another dispatcher is claiming are skipped (`FOR UPDATE SKIP
        LOCKED`); on SQLite the write transaction holds the database's lock, so the
        UPDATE ... WHERE claims atomically.
        """
        due = (
            sa.select(table.c.id)
            .where(*self._claimable(now))
            .order_by(table.c.next_attempt_at)
            .limit(limit)
        )
        if self.dialect == "postgresql":
            due = due.with_for_update(skip_locked=True)
        rows = await self.conn.execute(
            sa.update(table)
            .where(table.c.id.in_(due.scalar_subquery()), *self._claimable(now))
            .values(lease_owner=owner, lease_expires_at=lease_until)
            .returning(*table.c)
        )
        return [Claimed(delivery_from_row(row._mapping), row.payload) for row in rows]

    async def record(self, delivery_id: UUID, owner: str, outcome: Outcome) -> bool:
        """Write an attempt's outcome and give the lease up; False when the lease was lost."""
        current = await self.conn.scalar(
            sa.select(table.c.history).where(
                table.c.id == delivery_id, table.c.lease_owner == owner
            )
        )
        if current is None:
            return False
        history = [*current, outcome.attempt.model_dump(mode="json")][-HISTORY_KEPT:]
        delivered = outcome.status == DeliveryStatus.DELIVERED
        result = await self.conn.execute(
            sa.update(table)
            .where(table.c.id == delivery_id, table.c.lease_owner == owner)
            .values(
                status=outcome.status.value,
                attempts=table.c.attempts + 1,
                next_attempt_at=outcome.next_attempt_at,
                lease_owner=None,
                lease_expires_at=None,
                last_status_code=outcome.attempt.status_code,
                last_error=outcome.attempt.error,
                payload=outcome.payload,
                history=history,
                delivered_at=outcome.attempt.at if delivered else None,
            )
        )
        return bool(result.rowcount)

    async def release(self, delivery_ids: list[UUID], owner: str) -> None:
        """Give leases back unused (a dispatcher stopping), so others take them at once."""
        if delivery_ids:
            await self.conn.execute(
                sa.update(table)
                .where(table.c.id.in_(delivery_ids), table.c.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
            )

    @staticmethod
    def _claimable(now: datetime) -> list[sa.ColumnElement[bool]]:
        return [
            table.c.status == DeliveryStatus.PENDING.value,
            table.c.next_attempt_at <= now,
            sa.or_(table.c.lease_expires_at.is_(None), table.c.lease_expires_at < now),
        ]
