"""Tasks: root tasks and their subtasks."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from devteam.domain.enums import (
    LEASED_STATUSES,
    RUNNING_STATUSES,
    TERMINAL_STATUSES,
    AgentType,
    Phase,
    TaskStatus,
)
from devteam.domain.tasks import Budget, SubtaskRequest, Task, TaskError, Usage
from devteam.domain.webhooks import Webhook, WebhookEvent
from devteam.storage.database import driver_connection, on_driver
from devteam.storage.repositories._base import (
    Repository,
    json_records,
    pg_insert_records,
    pg_records,
    pg_types,
    pg_value,
    trusted,
)
from devteam.storage.tables import tasks
from devteam.storage.types import UTCDateTime, aware

_STATUSES = {s.value: s for s in TaskStatus}
_AGENT_TYPES = {a.value: a for a in AgentType}
_PHASES = {p.value: p for p in Phase}
_WEBHOOK_EVENTS = {e.value: e for e in WebhookEvent}
_TASK_FIELDS = frozenset(Task.model_fields)
_USAGE_FIELDS = frozenset(Usage.model_fields)
_ERROR_FIELDS = frozenset(TaskError.model_fields)


def task_from_row(row: RowMapping | Mapping[str, Any]) -> Task:
    """The task a row of `tasks` holds.

    Built without validation (as `Task` would build it from these values: enums,
    UUIDs, aware datetimes and nested models alike): the row was validated on its way in.
    """
    agent_type = row["agent_type"]
    phase = row["phase"]
    budget = row["budget"]
    plan = row["plan"]
    webhook = row["webhook"]
    error_code = row["error_code"]
    values = {
        "id": row["id"],
        "parent_id": row["parent_id"],
        "root_id": row["root_id"],
        "key": row["key"],
        "status": _STATUSES[row["status"]],
        "agent_type": _AGENT_TYPES[agent_type] if agent_type is not None else None,
        "task_type": row["task_type"],
        "task": row["task"],
        "complexity": row["complexity"],
        "priority": row["priority"],
        "project_id": row["project_id"],
        "metadata": row["metadata"],
        "phase": _PHASES[phase] if phase is not None else None,
        "depends_on": [UUID(d) for d in row["depends_on"]],
        "require_approval": row["require_approval"],
        "budget": _budget(budget) if budget else None,
        "plan": [_subtask_request(s) for s in plan] if plan else None,
        "webhook": _webhook(webhook) if webhook else None,
        "attempt": row["attempt"],
        "version": row["version"],
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "result": row["result"],
        "error": (
            trusted(
                TaskError,
                {"code": error_code, "message": row["error_message"] or ""},
                set(_ERROR_FIELDS),
            )
            if error_code
            else None
        ),
        "usage": trusted(
            Usage,
            {
                "requests": row["usage_requests"],
                "input_tokens": row["usage_input_tokens"],
                "output_tokens": row["usage_output_tokens"],
                "tool_calls": row["usage_tool_calls"],
                "cost_usd": float(row["cost_usd"]),
            },
            set(_USAGE_FIELDS),
        ),
        "lease_owner": row["lease_owner"],
        "lease_expires_at": row["lease_expires_at"],
        "not_before": row["not_before"],
        "queued_at": row["queued_at"],
        "deadline_at": row["deadline_at"],
        "trace_parent": row.get("trace_parent"),
    }
    return trusted(Task, values, set(_TASK_FIELDS))


_FIELD_COLUMNS: dict[str, tuple[str, ...]] = {
    "error": ("error_code", "error_message"),
    "usage": (
        "usage_requests",
        "usage_input_tokens",
        "usage_output_tokens",
        "usage_tool_calls",
        "cost_usd",
    ),
}
"""The columns of a task's fields whose column is not of the field's name."""


def _changed_columns(before: Task, after: Task) -> tuple[str, ...]:
    """The columns to write for `after`, read as `before`: fields not the same object (a
    changed task is a copy that shares what did not change) and not equal."""
    old, new = before.__dict__, after.__dict__
    columns: set[str] = set()
    for field, value in new.items():
        if value is not old[field] and value != old[field]:
            columns.update(_FIELD_COLUMNS.get(field, (field,)))
    return tuple(sorted(columns))


def _budget(stored: dict[str, Any]) -> Budget:
    max_cost_usd = stored.get("max_cost_usd")
    timeout_s = stored.get("timeout_s")
    values = {
        "max_tokens": stored.get("max_tokens"),
        "max_cost_usd": float(max_cost_usd) if max_cost_usd is not None else None,
        "timeout_s": float(timeout_s) if timeout_s is not None else None,
    }
    return trusted(Budget, values, set(stored))


def _subtask_request(stored: dict[str, Any]) -> SubtaskRequest:
    phase = stored.get("phase")
    values = {
        "key": stored["key"],
        "agent_type": _AGENT_TYPES[stored["agent_type"]],
        "task": stored["task"],
        "complexity": stored["complexity"],
        "task_type": stored.get("task_type"),
        "priority": stored.get("priority"),
        "phase": _PHASES[phase] if phase is not None else None,
        "depends_on": list(stored.get("depends_on", [])),
    }
    return trusted(SubtaskRequest, values, set(stored))


def _webhook(stored: dict[str, Any]) -> Webhook:
    values = {"url": stored["url"], "events": [_WEBHOOK_EVENTS[e] for e in stored["events"]]}
    return trusted(Webhook, values, set(stored))


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
        "plan": [s.model_dump(mode="json") for s in task.plan] if task.plan else None,
        "webhook": task.webhook.model_dump(mode="json") if task.webhook else None,
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
        "trace_parent": task.trace_parent,
    }


_RUNNING = tuple(sorted(RUNNING_STATUSES))
_TERMINAL = tuple(sorted(TERMINAL_STATUSES))
# Any constant: the advisory lock that serializes starts on Postgres.
_START_LOCK = 0x64657673  # "devs"
_children = tasks.alias("children")

# The statements of the orchestration's hot path, built once: SQLAlchemy then finds
# their compiled form in its cache by a cheap key instead of building them per call.
_INSERT = sa.insert(tasks)
_PLAN_WHILE_PENDING = sa.type_coerce(
    sa.case((tasks.c.status == "pending", tasks.c.plan), else_=sa.null()), tasks.c.plan.type
).label("plan")
"""A tree's tasks carry their requested plan only while pending: once planned, nothing the
engine runs reads it again (it stays in the row), and a root's plan is its largest column."""
_TREES = (
    sa.select(*(_PLAN_WHILE_PENDING if c.name == "plan" else c for c in tasks.c))
    .where(tasks.c.root_id.in_(sa.bindparam("root_ids", expanding=True)))
    .order_by(tasks.c.root_id, tasks.c.id)
)
_TREES_FOR_UPDATE = _TREES.with_for_update()
_ROOT_IDS = sa.select(tasks.c.id, tasks.c.root_id).where(
    tasks.c.id.in_(sa.bindparam("task_ids", expanding=True))
)
_PG_LOCK_STARTS = "SELECT owner, agent, attempts FROM devteam_lock_starts($1, $2::text[])"
_RUNNING_NOW = (
    tasks.c.status.in_(_RUNNING),
    tasks.c.lease_owner.is_not(None),
    # The predicate of the partial index of unfinished work, as written there, so both
    # databases search that index instead of scanning every task ever run.
    sa.text("status NOT IN ('completed', 'failed', 'cancelled')"),
)
_RUNNING_BY_OWNER_AND_AGENT = (
    sa.select(tasks.c.created_by, tasks.c.agent_type, sa.func.count())
    .where(*_RUNNING_NOW)
    .group_by(tasks.c.created_by, tasks.c.agent_type)
)
_RENEW_LEASES = (
    sa.update(tasks)
    .where(
        tasks.c.id.in_(sa.bindparam("task_ids", expanding=True)),
        tasks.c.lease_owner == sa.bindparam("owner"),
    )
    # A renewal is a change like any other: the version moves, so a tree held in memory
    # knows it is out of date.
    .values(lease_expires_at=sa.bindparam("until"), version=tasks.c.version + 1)
    .returning(tasks.c.id)
)


# On Postgres the hottest statements go to asyncpg directly (see `driver_connection`):
# through SQLAlchemy, most of their cost was SQLAlchemy's. Parameters are converted as
# SQLAlchemy's column types would: JSON serialized (None as JSON null), UTC checked.
_COLUMNS = tuple(c.name for c in tasks.c)
_ENCODE: dict[str, Callable[[Any], Any]] = {
    **{c.name: json.dumps for c in tasks.c if isinstance(c.type, sa.JSON)},
    **{c.name: aware for c in tasks.c if isinstance(c.type, UTCDateTime)},
}
_PG_INSERTED_COLUMNS = ", ".join(f'"{c}"' for c in _COLUMNS if c != "event_seq")
# What `task_to_row` writes: every column but the event counter (see EventRepository).
_INSERTED = tuple(c for c in _COLUMNS if c != "event_seq")
_PG_INSERT = (
    f"INSERT INTO tasks ({_PG_INSERTED_COLUMNS}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(_INSERTED) + 1))})"
)
_PG_TYPES = pg_types(tasks, _COLUMNS)
_TIME_COLUMNS = tuple(c.name for c in tasks.c if isinstance(c.type, UTCDateTime))


ChangeGroups = dict[tuple[str, ...], list[tuple[dict[str, Any], UUID, int]]]
"""Per set of changed columns: (new values, id, version read) of each changed row."""


def change_groups(changes: Sequence[tuple[Task, Task]]) -> ChangeGroups:
    """(as stored, as now) pairs grouped by the columns that changed."""
    groups: ChangeGroups = {}
    for before, after in changes:
        changed = _changed_columns(before, after)
        if not changed:
            continue
        new = task_to_row(after)
        groups.setdefault(changed, []).append(
            ({k: new[k] for k in changed}, before.id, before.version)
        )
    return groups


def pg_update_records(name: str, columns: tuple[str, ...], param: int) -> str:
    """A CTE `name` updating `columns` of the rows in JSON parameter `$param`, each only at
    the version it was read at, and raising their event counters (see `update_records`).
    Returns each updated row's id, event counter and trace parent."""
    types = {
        **{c: _PG_TYPES[c] for c in columns},
        "row_id": "UUID",
        "row_version": "INTEGER",
        "events_added": "INTEGER",
    }
    sets = ", ".join(f'"{c}" = {pg_value("v", c, _PG_TYPES[c])}' for c in columns)
    return (
        f"{name} AS (UPDATE tasks SET {sets}, event_seq = tasks.event_seq + v.events_added"
        f" FROM {pg_records(param, types, 'v')}"
        " WHERE tasks.id = v.row_id AND tasks.version = v.row_version"
        " RETURNING tasks.id, tasks.event_seq, tasks.trace_parent)"
    )


def update_records(
    rows: list[tuple[dict[str, Any], UUID, int]], events_added: Mapping[UUID, int]
) -> str:
    """The parameter of `pg_update_records` for `rows` of one change group."""
    return json_records(
        (
            {
                **values,
                "row_id": task_id,
                "row_version": version,
                "events_added": events_added.get(task_id, 0),
            }
            for values, task_id, version in rows
        ),
        times=_TIME_COLUMNS,
    )


def pg_insert_tasks(param: int, *, counted: bool = False) -> str:
    """An insert of the tasks in JSON parameter `$param` (see `task_records`); `counted`:
    with their event counters (else they start at 0)."""
    columns = _COLUMNS if counted else _INSERTED
    return pg_insert_records("tasks", {c: _PG_TYPES[c] for c in columns}, param)


def task_records(new: Sequence[Task], counters: Sequence[int] | None = None) -> str:
    """The parameter of `pg_insert_tasks` (with `counters`, of a `counted` one)."""
    if counters is None:
        return json_records((task_to_row(t) for t in new), times=_TIME_COLUMNS)
    return json_records(
        ({**task_to_row(t), "event_seq": n} for t, n in zip(new, counters, strict=True)),
        times=_TIME_COLUMNS,
    )


_PG_TREE_COLUMNS = ", ".join(
    'CASE WHEN "status" = \'pending\' THEN "plan" END AS "plan"' if c == "plan" else f'"{c}"'
    for c in _COLUMNS
)
_PG_TREES = (
    f"SELECT {_PG_TREE_COLUMNS} FROM tasks WHERE root_id = ANY($1::uuid[]) ORDER BY root_id, id"
)
_PG_TREES_FOR_UPDATE = f"{_PG_TREES} FOR UPDATE"
_PG_LOCK_TREES = "SELECT tree, tasks_in_tree, versions FROM devteam_lock_trees($1::uuid[])"
_PG_LOCK_ROOTS_OF = (
    "SELECT id FROM tasks WHERE id IN (SELECT root_id FROM tasks WHERE id = ANY($1::uuid[])) "
    "ORDER BY id FOR UPDATE"
)
_STATUSES_OF = sa.select(tasks.c.id, tasks.c.status).where(
    tasks.c.id.in_(sa.bindparam("task_ids", expanding=True))
)
_FINGERPRINTS = (
    sa.select(tasks.c.root_id, sa.func.count(), sa.func.sum(tasks.c.version))
    .where(tasks.c.root_id.in_(sa.bindparam("root_ids", expanding=True)))
    .group_by(tasks.c.root_id)
)


def _driver_params(row: Mapping[str, Any], columns: Sequence[str]) -> list[Any]:
    return [_ENCODE[c](row[c]) if c in _ENCODE else row[c] for c in columns]


@functools.lru_cache(maxsize=512)
def _pg_update(columns: tuple[str, ...]) -> str:
    """UPDATE of `columns` ($1..$n) of the row $n+1 at version $n+2."""
    values = ", ".join(f'"{c}" = ${i}' for i, c in enumerate(columns, 1))
    n = len(columns)
    return f"UPDATE tasks SET {values} WHERE id = ${n + 1} AND version = ${n + 2}"


@functools.lru_cache(maxsize=512)
def _update_statement(columns: tuple[str, ...]) -> sa.Update:
    """UPDATE of `columns` (parameters `v_<column>`) of the row `b_id` at version `b_version`."""
    return (
        sa.update(tasks)
        .where(tasks.c.id == sa.bindparam("b_id"), tasks.c.version == sa.bindparam("b_version"))
        .values({column: sa.bindparam(f"v_{column}") for column in columns})
    )


class TaskRepository(Repository):
    async def insert_many(self, new: Sequence[Task]) -> None:
        """Insert tasks; parents must come before their children."""
        if not new:
            return
        if self.dialect == "postgresql":
            rows = [_driver_params(task_to_row(t), _INSERTED) for t in new]
            driver = await driver_connection(self.conn)
            await on_driver(self.conn, driver.executemany(_PG_INSERT, rows), _PG_INSERT)
        else:
            await self.conn.execute(_INSERT, [task_to_row(t) for t in new])

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

    async def children_of(self, parent_ids: Sequence[UUID]) -> dict[UUID, list[Task]]:
        """The children of several tasks at once, each list in creation order."""
        if not parent_ids:
            return {}
        rows = await self.conn.execute(
            sa.select(tasks)
            .where(tasks.c.parent_id.in_(list(set(parent_ids))))
            .order_by(tasks.c.created_at)
        )
        found: dict[UUID, list[Task]] = {}
        for row in rows:
            task = task_from_row(row._mapping)
            assert task.parent_id is not None
            found.setdefault(task.parent_id, []).append(task)
        return found

    async def list_roots(
        self,
        *,
        owner: UUID | None = None,
        status: str | None = None,
        project_id: str | None = None,
        agent_type: str | None = None,
        before: tuple[datetime, UUID] | None = None,
        limit: int = 50,
    ) -> list[Task]:
        """Root tasks, newest first (`created_at`, then `id`); `owner` None means everyone's.

        `before` is the (`created_at`, `id`) of the last task of the previous page.
        The order matches the `ix_tasks_roots_by_owner` and `ix_tasks_roots` indexes.
        """
        query = (
            sa.select(tasks)
            .where(tasks.c.parent_id.is_(None))
            .order_by(tasks.c.created_at.desc(), tasks.c.id.desc())
            .limit(limit)
        )
        if owner is not None:
            query = query.where(tasks.c.created_by == owner)
        if status is not None:
            query = query.where(tasks.c.status == status)
        if project_id is not None:
            query = query.where(tasks.c.project_id == project_id)
        if agent_type is not None:
            query = query.where(tasks.c.agent_type == agent_type)
        if before is not None:
            created_at, task_id = before
            query = query.where(
                sa.or_(
                    tasks.c.created_at < created_at,
                    sa.and_(tasks.c.created_at == created_at, tasks.c.id < task_id),
                )
            )
        return [task_from_row(row._mapping) for row in await self.conn.execute(query)]

    # -- orchestration -------------------------------------------------------------

    async def load_trees(
        self, root_ids: Sequence[UUID], *, for_update: bool = True
    ) -> dict[UUID, list[Task]]:
        """Every task under each root, locked in a fixed order (root, id) to avoid deadlocks.

        A task's requested `plan` is read only while it is pending (see `_PLAN_WHILE_PENDING`).
        """
        ordered = sorted(set(root_ids))
        rows: Iterable[Any]  # asyncpg's records or SQLAlchemy's row mappings
        if self.dialect == "postgresql":
            sql = _PG_TREES_FOR_UPDATE if for_update else _PG_TREES
            driver = await driver_connection(self.conn)
            rows = await on_driver(self.conn, driver.fetch(sql, ordered), sql)
        else:
            query = _TREES_FOR_UPDATE if for_update else _TREES
            rows = (await self.conn.execute(query, {"root_ids": ordered})).mappings()
        trees: dict[UUID, list[Task]] = {}
        for row in rows:
            task = task_from_row(row)
            trees.setdefault(task.root_id, []).append(task)
        return trees

    async def lock_trees(self, root_ids: Sequence[UUID]) -> dict[UUID, tuple[int, int]]:
        """Lock each root's tree and return its fingerprint: (tasks, sum of their versions).

        Every change of a task raises its version and tasks are only added, so a tree held
        in memory whose fingerprint matches is the tree in the database. On Postgres the
        root rows are locked (in id order, so two transactions cannot deadlock): everything
        that changes a tree's tasks locks its root first (the engine's transactions here,
        `renew_leases`), and the fingerprint is read after the locks are held. SQLite's
        writers take turns anyway.
        """
        ordered = sorted(set(root_ids))
        if self.dialect == "postgresql":
            # One call: the locks, then the fingerprints read on a snapshot taken after
            # them (migration 0007).
            driver = await driver_connection(self.conn)
            rows = await on_driver(self.conn, driver.fetch(_PG_LOCK_TREES, ordered), _PG_LOCK_TREES)
            return {root_id: (int(count), int(total)) for root_id, count, total in rows}
        result = await self.conn.execute(_FINGERPRINTS, {"root_ids": ordered})
        return {root_id: (int(count), int(total)) for root_id, count, total in result}

    async def root_ids(self, task_ids: Sequence[UUID]) -> dict[UUID, UUID]:
        rows = await self.conn.execute(_ROOT_IDS, {"task_ids": list(set(task_ids))})
        return dict(rows.all())

    async def lock_starts(self) -> list[tuple[UUID, str | None, int]]:
        """Serialize starts across processes until the transaction ends (Postgres), then
        count the agent attempts running now (they hold a lease) per (user, agent type):
        every count the concurrency limits need. One round trip on Postgres (the count
        reads a snapshot taken after the lock, migration 0007)."""
        if self.dialect == "postgresql":
            driver = await driver_connection(self.conn)
            call = driver.fetch(_PG_LOCK_STARTS, _START_LOCK, list(_RUNNING))
            found = await on_driver(self.conn, call, _PG_LOCK_STARTS)
        else:
            found = await self.conn.execute(_RUNNING_BY_OWNER_AND_AGENT)
        return [(created_by, agent_type, int(n)) for created_by, agent_type, n in found]

    async def running_by_agent_type(self) -> dict[str, int]:
        """Agent attempts running now (they hold a lease), per agent type."""
        rows = await self.conn.execute(
            sa.select(tasks.c.agent_type, sa.func.count())
            .where(*_RUNNING_NOW, tasks.c.agent_type.is_not(None))
            .group_by(tasks.c.agent_type)
        )
        return {row[0]: int(row[1]) for row in rows}

    async def renew_leases(
        self, owner: str, task_ids: Sequence[UUID], until: datetime
    ) -> set[UUID]:
        """Extend the leases `owner` still holds; returns those ids.

        Their roots are locked first, as every change of a tree's tasks does (see
        `lock_trees`).
        """
        if not task_ids:
            return set()
        if self.dialect == "postgresql":
            driver = await driver_connection(self.conn)
            ids = list(task_ids)
            await on_driver(self.conn, driver.fetch(_PG_LOCK_ROOTS_OF, ids), _PG_LOCK_ROOTS_OF)
        rows = await self.conn.execute(
            _RENEW_LEASES, {"task_ids": list(task_ids), "owner": owner, "until": until}
        )
        return set(rows.scalars())

    async def expired_leases(self, now: datetime, limit: int = 500) -> list[Task]:
        rows = await self.conn.execute(
            sa.select(tasks)
            .where(
                tasks.c.status.in_(sorted(LEASED_STATUSES)),
                tasks.c.lease_owner.is_not(None),
                tasks.c.lease_expires_at < now,
            )
            .limit(limit)
        )
        return [task_from_row(row._mapping) for row in rows]

    async def unqueued_ready(self, now: datetime, limit: int = 500) -> list[Task]:
        """Delegated work not on the queue whose back-off has ended."""
        rows = await self.conn.execute(
            sa.select(tasks)
            .where(
                tasks.c.status == "delegated",
                tasks.c.queued_at.is_(None),
                sa.or_(tasks.c.not_before.is_(None), tasks.c.not_before <= now),
                ~sa.exists().where(_children.c.parent_id == tasks.c.id),
            )
            .limit(limit)
        )
        return [task_from_row(row._mapping) for row in rows]

    async def queued_work(self, limit: int = 10_000) -> list[Task]:
        """Work that should be on the queue: leaf tasks delegated, roots pending."""
        rows = await self.conn.execute(
            sa.select(tasks)
            .where(
                sa.or_(
                    sa.and_(
                        tasks.c.status == "delegated",
                        ~sa.exists().where(_children.c.parent_id == tasks.c.id),
                    ),
                    sa.and_(tasks.c.status == "pending", tasks.c.parent_id.is_(None)),
                )
            )
            .limit(limit)
        )
        return [task_from_row(row._mapping) for row in rows]

    async def overdue_roots(self, now: datetime, limit: int = 500) -> list[Task]:
        rows = await self.conn.execute(
            sa.select(tasks)
            .where(
                tasks.c.parent_id.is_(None),
                tasks.c.status.not_in(_TERMINAL),
                tasks.c.deadline_at < now,
            )
            .limit(limit)
        )
        return [task_from_row(row._mapping) for row in rows]

    async def roots_with_work_started_before(
        self, cutoff: datetime, limit: int = 500
    ) -> list[UUID]:
        """Active roots with a subtask running since before `cutoff` (phase timeouts)."""
        rows = await self.conn.execute(
            sa.select(tasks.c.root_id)
            .where(
                tasks.c.parent_id.is_not(None),
                tasks.c.status.not_in(_TERMINAL),
                tasks.c.started_at < cutoff,
            )
            .distinct()
            .limit(limit)
        )
        return [row.root_id for row in rows]

    async def waiting_since_before(self, cutoff: datetime, limit: int = 500) -> list[Task]:
        """Queued work that has not started since before `cutoff` (queue-wait timeouts)."""
        rows = await self.conn.execute(
            sa.select(tasks)
            .where(tasks.c.status == "delegated", tasks.c.queued_at < cutoff)
            .limit(limit)
        )
        return [task_from_row(row._mapping) for row in rows]

    async def statuses(self, task_ids: Sequence[UUID]) -> dict[UUID, str]:
        """The status of each task (one query)."""
        if not task_ids:
            return {}
        rows = await self.conn.execute(_STATUSES_OF, {"task_ids": list(task_ids)})
        return {row[0]: row[1] for row in rows.all()}

    async def write_changes(self, changes: Sequence[tuple[Task, Task]]) -> None:
        """Write (as stored, as now) pairs: one statement per set of changed columns.

        Each row is only updated if still at the version it was read at; the
        caller holds the rows' locks, so a mismatch means a bug, and raises.
        """
        groups = change_groups(changes)
        if self.dialect == "postgresql":
            # asyncpg reports no row counts of an executemany (nor did SQLAlchemy on it).
            driver = await driver_connection(self.conn)
            for columns, rows in groups.items():
                sql = _pg_update(columns)
                params = [
                    [*_driver_params(values, columns), task_id, version]
                    for values, task_id, version in rows
                ]
                await on_driver(self.conn, driver.executemany(sql, params), sql)
            return
        for columns, rows in groups.items():
            result = await self.conn.execute(
                _update_statement(columns),
                [
                    {
                        **{f"v_{c}": values[c] for c in columns},
                        "b_id": task_id,
                        "b_version": version,
                    }
                    for values, task_id, version in rows
                ],
            )
            if self.conn.dialect.supports_sane_multi_rowcount and result.rowcount != len(rows):
                raise RuntimeError("a task changed under a locked transaction")
