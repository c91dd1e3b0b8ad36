"""Events of a root task, numbered 1..N with no gap and no duplicate."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from devteam.domain.audit import NewAuditEntry
from devteam.domain.errors import NotFound
from devteam.domain.events import Event, NewEvent
from devteam.domain.tasks import Task
from devteam.observability.tracing import TRACEPARENT_PATTERN, trace_id_of
from devteam.storage.database import driver_connection, on_driver
from devteam.storage.repositories._base import (
    Repository,
    json_records,
    pg_insert_records,
    pg_records,
    pg_types,
    trusted,
)
from devteam.storage.repositories.audit import (
    AuditRepository,
    audit_records,
    pg_append_records,
)
from devteam.storage.repositories.tasks import (
    TaskRepository,
    change_groups,
    pg_insert_tasks,
    pg_update_records,
    task_records,
    task_to_row,
    update_records,
)
from devteam.storage.tables import events as events_table
from devteam.storage.tables import tasks
from devteam.storage.types import utcnow

_INSERT_EVENTS = sa.insert(events_table)
_INSERT_TASK = sa.insert(tasks)
_EVENT_FIELDS = frozenset(Event.model_fields)


@functools.lru_cache(maxsize=64)
def _increment_statement(roots: int) -> sa.Update:
    """Add `n<i>` to the event counter of root `r<i>`, for `roots` roots; returns the
    roots' ids, new counters and trace parents."""
    ids = [sa.bindparam(f"r{i}", type_=tasks.c.id.type) for i in range(roots)]
    if roots == 1:
        increment: sa.ColumnElement[int] = sa.bindparam("n0", type_=sa.Integer)
    else:
        increment = sa.case(
            *(
                (tasks.c.id == ids[i], sa.bindparam(f"n{i}", type_=sa.Integer))
                for i in range(roots)
            ),
            else_=0,
        )
    return (
        sa.update(tasks)
        .where(tasks.c.id == ids[0] if roots == 1 else tasks.c.id.in_(ids))
        .values(event_seq=tasks.c.event_seq + increment)
        .returning(tasks.c.id, tasks.c.event_seq, tasks.c.trace_parent)
    )


# On Postgres, through the driver (see `driver_connection`): a transaction's writes in
# one statement. Parameters $1, $2: the roots whose counters are raised by themselves and
# by how much; $3: the events (JSON records, see `json_records`); then the new tasks', then
# each change group's (see `pg_insert_tasks`, `pg_update_records`).
_PG_COUNTERS = (
    "counters AS ("
    " UPDATE tasks SET event_seq = tasks.event_seq + c.n"
    " FROM unnest($1::uuid[], $2::int[]) AS c(id, n) WHERE tasks.id = c.id"
    " RETURNING tasks.id, tasks.event_seq, tasks.trace_parent)"
)
_PG_NUMBERED_EVENT_TYPES = {
    "id": "UUID",
    "task_id": "UUID",
    "subtask_id": "UUID",
    "offset_from_last": "INTEGER",
    "type": "TEXT",
    "data": "JSONB",
    "ts": "TIMESTAMP WITH TIME ZONE",
}
_PG_NUMBERED_EVENTS = (
    "inserted AS ("
    " INSERT INTO events (id, task_id, subtask_id, seq, type, data, ts, trace_id)"
    " SELECT e.id, e.task_id, e.subtask_id, numbered.event_seq + e.offset_from_last, e.type,"
    " e.data, e.ts,"
    f" substring(numbered.trace_parent FROM '{TRACEPARENT_PATTERN}')"
    f" FROM {pg_records(3, _PG_NUMBERED_EVENT_TYPES, 'e')}"
    " JOIN numbered ON numbered.id = e.task_id)"
)


@functools.lru_cache(maxsize=256)
def _pg_write(created: bool, groups: tuple[tuple[str, ...], ...]) -> str:
    """The statement of a transaction's writes: new tasks inserted, changed tasks updated
    (a root's counter raised with its own update), the other roots' counters raised, the
    events inserted, each numbered from its root's new counter by its (zero or negative)
    offset. Returns every updated row's id, event counter and trace parent. Foreign keys
    are checked at the statement's end, when the new tasks are there."""
    ctes: list[str] = []
    param = 4
    if created:
        ctes.append(f"created AS ({pg_insert_tasks(param)})")
        param += 1
    names = []
    for i, columns in enumerate(groups):
        names.append(f"changed_{i}")
        ctes.append(pg_update_records(names[-1], columns, param))
        param += 1
    ctes.append(_PG_COUNTERS)
    numbered = " UNION ALL ".join(
        f"SELECT id, event_seq, trace_parent FROM {name}" for name in [*names, "counters"]
    )
    ctes += [f"numbered AS ({numbered})", _PG_NUMBERED_EVENTS]
    return f"WITH {', '.join(ctes)} SELECT id, event_seq, trace_parent FROM numbered"


_EVENT_COLUMNS = ("id", "task_id", "subtask_id", "seq", "type", "data", "ts", "trace_id")
_PG_EVENT_TYPES = pg_types(events_table, _EVENT_COLUMNS)


def _pg_insert_events(param: int) -> str:
    return pg_insert_records("events", _PG_EVENT_TYPES, param)


_PG_INSERT_EVENTS = _pg_insert_events(1)
"""Every event of a transaction in one statement: each column one array parameter."""


def _event(values: dict[str, Any]) -> Event:
    return trusted(Event, values, set(_EVENT_FIELDS))


def _last_numbers(
    rows: Iterable[Any], counts: Mapping[UUID, int]
) -> dict[UUID, tuple[int, str | None]]:
    """Each root's counter after the increment, and its trace id; NotFound for a root the
    increment did not find."""
    last = {root_id: (seq, trace_id_of(trace_parent)) for root_id, seq, trace_parent in rows}
    if missing := [root for root in counts if root not in last]:
        raise NotFound(f"task {missing[0]} does not exist")
    return last


def _new_row(
    root_id: UUID, item: NewEvent, seq: int, now: datetime, trace_id: str | None
) -> dict[str, Any]:
    """The stored values of `item` as event `seq` of `root_id` (`type` as the enum)."""
    return {
        "id": uuid.uuid4(),
        "task_id": root_id,
        "subtask_id": item.subtask_id,
        "seq": seq,
        "type": item.type,
        "data": item.data,
        "ts": now,
        "trace_id": trace_id,
    }


class EventRepository(Repository):
    async def append(self, root_id: UUID, new: Sequence[NewEvent]) -> list[Event]:
        """Append `new` to the history of `root_id` and return them with their `seq`."""
        return (await self.append_many({root_id: new})).get(root_id, [])

    async def append_many(
        self,
        new: Mapping[UUID, Sequence[NewEvent]],
        *,
        created: Sequence[Task] = (),
        changes: Sequence[tuple[Task, Task]] = (),
    ) -> dict[UUID, list[Event]]:
        """Append events to the histories of several roots, with the task rows of the same
        transaction: `created` inserted (parents before their children), `changes` ((as
        stored, as now) pairs, see `TaskRepository.write_changes`) written. One statement
        on Postgres.

        The counters live on the root tasks' rows. Incrementing them takes those
        rows' locks until the transaction ends, so concurrent appends to one root
        queue up and each gets the next numbers; a rolled-back transaction gives
        its numbers back with it, so a sequence never has a gap.
        """
        counts = {root: len(items) for root, items in new.items() if items}
        if counts and self.dialect == "postgresql":
            return await self._write_pg(new, counts, created, changes)
        tasks_ = TaskRepository(self.conn)
        await tasks_.insert_many(created)
        await tasks_.write_changes(changes)
        if not counts:
            return {}
        params: dict[str, object] = {}
        for i, (root, n) in enumerate(counts.items()):
            params[f"r{i}"] = root
            params[f"n{i}"] = n
        rows = await self.conn.execute(_increment_statement(len(counts)), params)
        last = _last_numbers(rows, counts)
        now = utcnow()
        appended: dict[UUID, list[Event]] = {}
        values: list[dict[str, object]] = []
        for root, items in new.items():
            if not items:
                continue
            seq, trace_id = last[root]
            first = seq - len(items) + 1
            events = []
            for i, item in enumerate(items):
                row = _new_row(root, item, first + i, now, trace_id)
                events.append(_event(row))
                values.append({**row, "type": item.type.value})
            appended[root] = events
        await self._insert(values)
        return appended

    async def _write_pg(
        self,
        new: Mapping[UUID, Sequence[NewEvent]],
        counts: dict[UUID, int],
        created: Sequence[Task],
        changes: Sequence[tuple[Task, Task]],
    ) -> dict[UUID, list[Event]]:
        """`append_many` on Postgres, in one statement (see `_pg_write`)."""
        now = utcnow()
        records: list[dict[str, Any]] = []
        for root, items in new.items():
            n = len(items)
            for i, item in enumerate(items):
                records.append(
                    {
                        "id": uuid.uuid4(),
                        "task_id": root,
                        "subtask_id": item.subtask_id,
                        "offset_from_last": i + 1 - n,
                        "type": item.type.value,
                        "data": item.data,
                        "ts": now,
                    }
                )
        groups = change_groups(changes)
        changed = {task_id for rows in groups.values() for _, task_id, _ in rows}
        alone = [root for root in counts if root not in changed]
        numbered = json_records(records, times=("ts",))
        params: list[Any] = [alone, [counts[root] for root in alone], numbered]
        if created:
            params.append(task_records(created))
        for group_rows in groups.values():
            params.append(update_records(group_rows, counts))
        statement = _pg_write(bool(created), tuple(groups))
        driver = await driver_connection(self.conn)
        found = await on_driver(self.conn, driver.fetch(statement, *params), statement)
        if changed - {row[0] for row in found}:
            raise RuntimeError("a task changed under a locked transaction")
        last = _last_numbers(found, counts)
        appended: dict[UUID, list[Event]] = {}
        k = 0
        for root, items in new.items():
            if not items:
                continue
            seq, trace_id = last[root]
            events = []
            for item in items:
                record = records[k]
                row = _new_row(root, item, seq + record["offset_from_last"], now, trace_id)
                row["id"] = record["id"]
                events.append(_event(row))
                k += 1
            appended[root] = events
        return appended

    async def _insert(self, values: list[dict[str, Any]]) -> None:
        """Insert event rows (`type` as its value) in one statement."""
        if not values:
            return
        if self.dialect == "postgresql":
            driver = await driver_connection(self.conn)
            call = driver.execute(_PG_INSERT_EVENTS, json_records(values, times=("ts",)))
            await on_driver(self.conn, call, _PG_INSERT_EVENTS)
        else:
            await self.conn.execute(_INSERT_EVENTS, values)

    async def insert_roots(
        self, roots: Sequence[tuple[Task, Sequence[NewEvent], NewAuditEntry | None]]
    ) -> list[list[Event]]:
        """Insert new root tasks with the start of their histories (events 1..n each) and,
        given them, the audit entries of their creation.

        Nobody else sees the rows before the commit, so their counters are written as
        n rather than incremented. On Postgres all of it is one statement, one round
        trip, atomic by itself.
        """
        now = utcnow()
        values: list[dict[str, Any]] = []
        made: list[list[Event]] = []
        for root, first, _ in roots:
            trace_id = trace_id_of(root.trace_parent)
            events = []
            for i, item in enumerate(first):
                row = _new_row(root.id, item, i + 1, now, trace_id)
                events.append(_event(row))
                values.append({**row, "type": item.type.value})
            made.append(events)
        audits = [audit for _, _, audit in roots if audit is not None]
        if self.dialect == "postgresql":
            statement = _pg_roots(bool(audits))
            params = [
                task_records([root for root, _, _ in roots], [len(e) for e in made]),
                *([audit_records(audits)] if audits else []),
                json_records(values, times=("ts",)),
            ]
            driver = await driver_connection(self.conn)
            await on_driver(self.conn, driver.execute(statement, *params), statement)
            return made
        rows = [
            {**task_to_row(root), "event_seq": len(events)}
            for (root, _, _), events in zip(roots, made, strict=True)
        ]
        await self.conn.execute(_INSERT_TASK, rows)
        await self._insert(values)
        await AuditRepository(self.conn).append_many(audits)
        return made

    async def insert_root(
        self, root: Task, first: Sequence[NewEvent], *, audit: NewAuditEntry | None = None
    ) -> list[Event]:
        """`insert_roots` of one root."""
        (events,) = await self.insert_roots([(root, first, audit)])
        return events

    async def list_after(
        self,
        root_id: UUID,
        after: int = 0,
        limit: int = 500,
        *,
        subtask_id: UUID | None = None,
    ) -> list[Event]:
        """Events of `root_id` with `seq > after`, in order; only one subtask's when given."""
        query = (
            sa.select(events_table)
            .where(events_table.c.task_id == root_id, events_table.c.seq > after)
            .order_by(events_table.c.seq)
            .limit(limit)
        )
        if subtask_id is not None:
            query = query.where(events_table.c.subtask_id == subtask_id)
        rows = await self.conn.execute(query)
        return [Event.model_validate(row._mapping) for row in rows]

    async def last_seq(self, root_id: UUID) -> int:
        value = await self.conn.scalar(sa.select(tasks.c.event_seq).where(tasks.c.id == root_id))
        return int(value or 0)


@functools.cache
def _pg_roots(audited: bool) -> str:
    """New roots (with their event counters), their first events and, `audited`, the
    audit entries of their creation, in one statement (one JSON parameter each). The
    events' foreign key is checked at the statement's end, when the tasks' rows exist."""
    ctes = [f"new_tasks AS ({pg_insert_tasks(1, counted=True)})"]
    if audited:
        ctes.append(f"new_audit AS ({pg_append_records(2)})")
    return f"WITH {', '.join(ctes)} {_pg_insert_events(len(ctes) + 1)}"
