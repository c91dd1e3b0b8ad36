"""Retention: what is purged, what stays (running work above all), on SQLite and Postgres."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from uuid import UUID

import sqlalchemy as sa

from devteam.domain.audit import AuditOutcome, NewAuditEntry
from devteam.domain.enums import TaskStatus
from devteam.domain.events import EventType, NewEvent
from devteam.domain.tasks import Task
from devteam.domain.users import User
from devteam.housekeeping import purge_now
from devteam.observability.metrics import RETENTION_PURGED
from devteam.settings.security import RetentionConfig
from devteam.storage import Database, Store
from devteam.storage.retention import RetentionPolicy, purge
from devteam.storage.tables import audit_log, events, refresh_tokens, tasks
from devteam.storage.types import utcnow
from tests.factories import create_user, make_task

DAY = timedelta(days=1)


async def add_tree(
    store: Store,
    user: User,
    status: TaskStatus,
    finished_days_ago: float | None,
    subtask_statuses: tuple[TaskStatus, ...] = (TaskStatus.COMPLETED, TaskStatus.COMPLETED),
) -> Task:
    """A root task with subtasks and a few events."""
    now = utcnow()
    finished = None if finished_days_ago is None else now - finished_days_ago * DAY
    root = make_task(user.id, status=status, created_at=now - 60 * DAY, finished_at=finished)
    subtasks = [
        make_task(
            user.id,
            parent_id=root.id,
            root_id=root.id,
            key=f"step{n}",
            status=sub_status,
            finished_at=finished if sub_status.is_terminal else None,
        )
        for n, sub_status in enumerate(subtask_statuses)
    ]
    async with store.transaction() as tx:
        await tx.tasks.insert_many([root, *subtasks])
        await tx.events.append(
            root.id,
            [NewEvent(type=EventType.TASK_CREATED, data={"status": "pending"})]
            + [
                NewEvent(type=EventType.TASK_STARTED, subtask_id=s.id, data={"key": s.key})
                for s in subtasks
            ],
        )
    return root


async def task_ids(store: Store) -> set[UUID]:
    async with store.read() as tx:
        return set((await tx.conn.execute(sa.select(tasks.c.id))).scalars())


async def event_roots(store: Store) -> dict[UUID, int]:
    async with store.read() as tx:
        rows = await tx.conn.execute(
            sa.select(events.c.task_id, sa.func.count()).group_by(events.c.task_id)
        )
        return {row[0]: row[1] for row in rows}


async def test_expired_and_revoked_refresh_tokens_are_purged(store: Store) -> None:
    user = await create_user(store)
    now = utcnow()
    kinds = {
        "live": (now + DAY, None, None),
        "expired": (now - timedelta(seconds=1), None, None),
        "used, session live": (now + DAY, now - DAY, None),
        "revoked just now": (now + DAY, None, now),
        "revoked two days ago": (now + DAY, None, now - 2 * DAY),
    }
    ids: dict[str, UUID] = {}
    async with store.transaction() as tx:
        for kind, (expires_at, used_at, revoked_at) in kinds.items():
            ids[kind] = uuid.uuid4()
            await tx.conn.execute(
                sa.insert(refresh_tokens).values(
                    id=ids[kind],
                    jti_hash=uuid.uuid4().hex,
                    family_id=uuid.uuid4(),
                    user_id=user.id,
                    issued_at=now - 3 * DAY,
                    expires_at=expires_at,
                    used_at=used_at,
                    revoked_at=revoked_at,
                )
            )
    purged = await purge(store, RetentionPolicy(batch_size=1), now)
    async with store.read() as tx:
        left = set((await tx.conn.execute(sa.select(refresh_tokens.c.id))).scalars())
    assert purged == {"refresh_tokens": 2, "audit": 0, "events": 0, "tasks": 0}
    assert left == {ids["live"], ids["used, session live"], ids["revoked just now"]}


async def test_without_a_retention_tasks_events_and_audit_stay(store: Store) -> None:
    user = await create_user(store)
    root = await add_tree(store, user, TaskStatus.COMPLETED, finished_days_ago=3650)
    async with store.transaction() as tx:
        await tx.audit.append(NewAuditEntry(action="auth.login", outcome=AuditOutcome.SUCCESS))
    purged = await purge(store, RetentionPolicy(), utcnow() + 3650 * DAY)
    assert purged == {"refresh_tokens": 0, "audit": 0, "events": 0, "tasks": 0}
    assert root.id in await task_ids(store)
    assert (await event_roots(store))[root.id] == 3


async def test_finished_trees_go_whole_and_running_work_stays(store: Store) -> None:
    user = await create_user(store)
    old = [
        await add_tree(store, user, status, finished_days_ago=40)
        for status in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)
    ]
    recent = await add_tree(store, user, TaskStatus.COMPLETED, finished_days_ago=1)
    running = await add_tree(store, user, TaskStatus.IN_PROGRESS, finished_days_ago=None)
    # A finished root whose subtask still runs (a cancellation on its way, say).
    unsettled = await add_tree(
        store,
        user,
        TaskStatus.CANCELLED,
        finished_days_ago=40,
        subtask_statuses=(TaskStatus.COMPLETED, TaskStatus.IN_PROGRESS),
    )
    kept = {recent.id, running.id, unsettled.id}
    before = await task_ids(store)

    # Batches of one root: three batches, then one that finds nothing.
    policy = RetentionPolicy(finished_tasks=30 * DAY, batch_size=5)
    purged = await purge(store, policy, utcnow())

    assert purged["tasks"] == 3
    left = await task_ids(store)
    assert not {t.id for t in old} & left
    assert len(before - left) == 3 * 3  # each old root with its two subtasks
    assert kept <= left
    assert set(await event_roots(store)) == kept


async def test_events_of_long_finished_tasks_go_and_the_tasks_stay(store: Store) -> None:
    user = await create_user(store)
    old = await add_tree(store, user, TaskStatus.COMPLETED, finished_days_ago=10)
    recent = await add_tree(store, user, TaskStatus.COMPLETED, finished_days_ago=2)
    running = await add_tree(store, user, TaskStatus.IN_PROGRESS, finished_days_ago=None)
    purged = await purge(store, RetentionPolicy(events=7 * DAY, batch_size=2), utcnow())
    assert purged["events"] == 3 and purged["tasks"] == 0
    assert set(await event_roots(store)) == {recent.id, running.id}
    assert old.id in await task_ids(store)
    # A later event of the task would still get the next number (the counter is the task's).
    async with store.transaction() as tx:
        (appended,) = await tx.events.append(old.id, [NewEvent(type=EventType.TASK_PROGRESS)])
    assert appended.seq == 4


async def test_audit_entries_older_than_the_retention_go(store: Store) -> None:
    async with store.transaction() as tx:
        for n in range(5):
            await tx.audit.append(NewAuditEntry(action=f"test.{n}", outcome=AuditOutcome.SUCCESS))
        # The first three were written long ago.
        oldest = sa.select(audit_log.c.id).order_by(audit_log.c.id).limit(3).scalar_subquery()
        await tx.conn.execute(
            sa.update(audit_log).where(audit_log.c.id.in_(oldest)).values(ts=utcnow() - 100 * DAY)
        )
    purged = await purge(store, RetentionPolicy(audit=90 * DAY, batch_size=2), utcnow())
    async with store.read() as tx:
        entries = await tx.audit.list(limit=10)
    assert purged["audit"] == 3
    assert sorted(e.action for e in entries) == ["test.3", "test.4"]


async def test_processes_purging_at_once_are_harmless(store: Store, database_url: str) -> None:
    user = await create_user(store)
    old = [await add_tree(store, user, TaskStatus.COMPLETED, 40) for _ in range(6)]
    recent = await add_tree(store, user, TaskStatus.COMPLETED, 1)
    others = [Store(Database(database_url)) for _ in range(2)]
    try:
        policy = RetentionPolicy(finished_tasks=30 * DAY, events=20 * DAY, batch_size=10)
        results = await asyncio.gather(*(purge(s, policy, utcnow()) for s in [store, *others]))
    finally:
        for other in others:
            await other.close()
    assert sum(r["tasks"] for r in results) <= len(old)
    left = await task_ids(store)
    assert not {t.id for t in old} & left
    assert recent.id in left
    assert set(await event_roots(store)) == {recent.id}


def purged_total(kind: str) -> float:
    return RETENTION_PURGED.labels(kind)._value.get()


async def test_purge_now_follows_the_config_and_counts(store: Store) -> None:
    user = await create_user(store)
    await add_tree(store, user, TaskStatus.COMPLETED, finished_days_ago=5)
    before = purged_total("tasks")
    assert (await purge_now(store, RetentionConfig()))["tasks"] == 0
    assert (await purge_now(store, RetentionConfig(finished_tasks_days=4)))["tasks"] == 1
    assert purged_total("tasks") == before + 1
