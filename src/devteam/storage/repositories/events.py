"""Events of a root task, numbered 1..N with no gap and no duplicate."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from uuid import UUID

import sqlalchemy as sa

from devteam.domain.errors import NotFound
from devteam.domain.events import Event, NewEvent
from devteam.storage.repositories._base import Repository
from devteam.storage.tables import events, tasks
from devteam.storage.types import utcnow


class EventRepository(Repository):
    async def append(self, root_id: UUID, new: Sequence[NewEvent]) -> list[Event]:
        """Append `new` to the history of `root_id` and return them with their `seq`.

        The counter lives on the root task's row. Incrementing it takes that row's
        lock until the transaction ends, so concurrent appends to one root queue up
        and each gets the next numbers; a rolled-back transaction gives its numbers
        back with it, so the sequence never has a gap.
        """
        if not new:
            return []
        last = (
            await self.conn.execute(
                sa.update(tasks)
                .where(tasks.c.id == root_id)
                .values(event_seq=tasks.c.event_seq + len(new))
                .returning(tasks.c.event_seq)
            )
        ).scalar_one_or_none()
        if last is None:
            raise NotFound(f"task {root_id} does not exist")
        now = utcnow()
        first = last - len(new) + 1
        appended = [
            Event(
                id=uuid.uuid4(),
                task_id=root_id,
                subtask_id=item.subtask_id,
                seq=first + i,
                type=item.type,
                data=item.data,
                ts=now,
            )
            for i, item in enumerate(new)
        ]
        await self.conn.execute(
            sa.insert(events),
            [
                {
                    "id": e.id,
                    "task_id": e.task_id,
                    "subtask_id": e.subtask_id,
                    "seq": e.seq,
                    "type": e.type.value,
                    "data": e.data,
                    "ts": e.ts,
                }
                for e in appended
            ],
        )
        return appended

    async def list_after(self, root_id: UUID, after: int = 0, limit: int = 500) -> list[Event]:
        """Events of `root_id` with `seq > after`, in order."""
        rows = await self.conn.execute(
            sa.select(events)
            .where(events.c.task_id == root_id, events.c.seq > after)
            .order_by(events.c.seq)
            .limit(limit)
        )
        return [Event.model_validate(row._mapping) for row in rows]

    async def last_seq(self, root_id: UUID) -> int:
        value = await self.conn.scalar(sa.select(tasks.c.event_seq).where(tasks.c.id == root_id))
        return int(value or 0)
