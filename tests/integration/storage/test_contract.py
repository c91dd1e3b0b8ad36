"""The storage contract, run against SQLite and a real Postgres."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError

from devteam.domain.audit import AuditOutcome, NewAuditEntry
from devteam.domain.enums import AgentType, Phase, Role, TaskStatus
from devteam.domain.errors import Conflict, NotFound
from devteam.domain.events import EventType, NewEvent
from devteam.domain.tasks import Budget, SubtaskRequest, TaskError, Usage
from devteam.domain.webhooks import Webhook
from devteam.storage import Store
from devteam.storage.migrate import current_revision, head_revision
from devteam.storage.types import utcnow
from tests.factories import create_root_task, create_user, make_task


async def test_schema_is_at_the_latest_revision(store: Store) -> None:
    assert await current_revision(store.db) == head_revision()


async def test_users_are_unique_by_name(store: Store) -> None:
    user = await create_user(store, "ada", Role.ADMIN)
    with pytest.raises(Conflict):
        await create_user(store, "ada")
    async with store.read() as tx:
        fetched = await tx.users.get(user.id)
        with_secret = await tx.users.get_with_secret("ada")
        assert await tx.users.count() == 1
    assert fetched == user
    assert with_secret is not None
    assert with_secret.password_hash == "not-a-real-hash"
    assert fetched.created_at.tzinfo is not None


async def test_a_failed_insert_keeps_the_rest_of_the_transaction(store: Store) -> None:
    await create_user(store, "ada")
    async with store.transaction() as tx:
        with pytest.raises(Conflict):
            await tx.users.create("ada", "x", Role.VIEWER)
        await tx.users.create("grace", "x", Role.VIEWER)
    async with store.read() as tx:
        assert [u.username for u in await tx.users.list()] == ["ada", "grace"]


async def test_tasks_round_trip_every_field(store: Store) -> None:
    user = await create_user(store)
    root = make_task(
        user.id,
        metadata={"ticket": "OPS-1", "nested": {"a": [1, 2]}},
        budget=Budget(max_tokens=1000, max_cost_usd=0.5),
        require_approval=True,
        error=TaskError(code="timeout", message="too slow"),
        usage=Usage(requests=2, input_tokens=10, output_tokens=5, tool_calls=1, cost_usd=0.25),
        status=TaskStatus.FAILED,
    )
    child = make_task(
        user.id,
        parent_id=root.id,
        root_id=root.id,
        key="research",
        depends_on=[root.id],
        agent_type=AgentType.RESEARCH,
        phase=Phase.RESEARCH,
        plan=[
            SubtaskRequest(
                key="look",
                agent_type=AgentType.BACKEND,
                task="  Look around the code  ",
                complexity=2,
            )
        ],
        webhook=Webhook(url="https://ci.example.com/hook", events=["failed"]),
        budget=Budget(timeout_s=60),
        result={"summary": "done"},
        lease_owner="worker-1",
        lease_expires_at=utcnow() + timedelta(seconds=30),
        trace_parent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    async with store.transaction() as tx:
        await tx.tasks.insert_many([root, child])
    async with store.read() as tx:
        assert await tx.tasks.get(root.id) == root
        assert await tx.tasks.children(root.id) == [child]
        assert await tx.tasks.get(uuid.uuid4()) is None
        trees = await tx.tasks.load_trees([root.id], for_update=False)
    # Read back exactly as validation builds them: same values of the same types.
    for read, written in zip(
        trees[root.id], sorted([root, child], key=lambda t: t.id), strict=True
    ):
        assert shapes(read) == shapes(written)
        assert read.model_dump(mode="json") == written.model_dump(mode="json")


def shapes(value: object) -> object:
    """`value` with the type of every part of it, nested models included."""
    if isinstance(value, BaseModel):
        fields = {name: shapes(v) for name, v in vars(value).items()}
        return type(value), fields
    if isinstance(value, list):
        return [shapes(v) for v in value]
    if isinstance(value, dict):
        return {k: shapes(v) for k, v in value.items()}
    if isinstance(value, uuid.UUID):
        return uuid.UUID, value
    return type(value), value, getattr(value, "tzinfo", None)


async def test_a_duplicate_task_is_an_integrity_error_and_rolls_back(store: Store) -> None:
    user = await create_user(store)
    root = await create_root_task(store, user)
    child = make_task(user.id, parent_id=root.id, root_id=root.id, key="a")
    with pytest.raises(IntegrityError):
        async with store.transaction() as tx:
            await tx.tasks.insert_many([child])
            await tx.tasks.insert_many([root])
    async with store.read() as tx:
        assert await tx.tasks.children(root.id) == []
        assert await tx.tasks.get(root.id) == root


async def test_events_are_numbered_from_one(store: Store) -> None:
    user = await create_user(store)
    root = await create_root_task(store, user)
    async with store.transaction() as tx:
        first = await tx.events.append(root.id, [NewEvent(type=EventType.TASK_CREATED)])
        more = await tx.events.append(
            root.id,
            [
                NewEvent(type=EventType.TASK_PLANNED, data={"subtasks": 2}),
                NewEvent(type=EventType.TASK_DELEGATED, subtask_id=root.id),
            ],
        )
    assert [e.seq for e in first + more] == [1, 2, 3]
    async with store.read() as tx:
        replay = await tx.events.list_after(root.id, after=1)
        assert await tx.events.last_seq(root.id) == 3
    assert [(e.seq, e.type, e.data) for e in replay] == [
        (2, EventType.TASK_PLANNED, {"subtasks": 2}),
        (3, EventType.TASK_DELEGATED, {}),
    ]


async def test_appending_to_an_unknown_task_is_not_found(store: Store) -> None:
    async with store.transaction() as tx:
        with pytest.raises(NotFound):
            await tx.events.append(uuid.uuid4(), [NewEvent(type=EventType.TASK_CREATED)])


async def test_a_rolled_back_append_leaves_no_gap(store: Store) -> None:
    user = await create_user(store)
    root = await create_root_task(store, user)
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.events.append(root.id, [NewEvent(type=EventType.TASK_CREATED)])
            raise RuntimeError("abort")
    async with store.transaction() as tx:
        (event,) = await tx.events.append(root.id, [NewEvent(type=EventType.TASK_CREATED)])
    assert event.seq == 1


async def test_concurrent_appends_get_every_number_once(store: Store) -> None:
    user = await create_user(store)
    root = await create_root_task(store, user)
    other = await create_root_task(store, user)

    async def append(root_id: uuid.UUID, n: int) -> list[int]:
        async with store.transaction() as tx:
            appended = await tx.events.append(
                root_id, [NewEvent(type=EventType.TASK_PROGRESS, data={"i": i}) for i in range(n)]
            )
            await asyncio.sleep(0)  # let other appenders interleave
            return [e.seq for e in appended]

    results = await asyncio.gather(
        *(append(root.id, 1 + i % 3) for i in range(40)),
        *(append(other.id, 1) for _ in range(10)),
    )
    seen = sorted(seq for chunk in results[:40] for seq in chunk)
    assert seen == list(range(1, len(seen) + 1))
    for chunk in results[:40]:
        assert chunk == list(range(chunk[0], chunk[0] + len(chunk)))  # a batch is contiguous
    async with store.read() as tx:
        stored = [e.seq for e in await tx.events.list_after(root.id, limit=1000)]
        other_stored = [e.seq for e in await tx.events.list_after(other.id)]
    assert stored == seen
    assert other_stored == list(range(1, 11))


async def test_refresh_tokens_are_used_once(store: Store) -> None:
    user = await create_user(store)
    family = uuid.uuid4()
    token_id = uuid.uuid4()
    now = utcnow()
    async with store.transaction() as tx:
        await tx.refresh_tokens.insert(
            token_id=token_id,
            jti_hash="a" * 64,
            family_id=family,
            user_id=user.id,
            issued_at=now,
            expires_at=now + timedelta(days=7),
        )

    async def use() -> bool:
        async with store.transaction() as tx:
            return await tx.refresh_tokens.mark_used(token_id, uuid.uuid4())

    outcomes = await asyncio.gather(*(use() for _ in range(5)))
    assert sorted(outcomes) == [False, False, False, False, True]
    async with store.transaction() as tx:
        assert await tx.refresh_tokens.revoke_family(family) == 1
        record = await tx.refresh_tokens.get_by_jti_hash("a" * 64)
    assert record is not None
    assert record.used_at is not None
    assert record.revoked_at is not None


async def test_audit_log_pages_newest_first(store: Store) -> None:
    async with store.transaction() as tx:
        for i in range(5):
            await tx.audit.append(
                NewAuditEntry(
                    action="auth.login" if i % 2 else "task.submit",
                    outcome=AuditOutcome.SUCCESS,
                    actor="ada",
                    details={"i": i},
                )
            )
    async with store.read() as tx:
        page = await tx.audit.list(limit=2)
        rest = await tx.audit.list(limit=10, before_id=page[-1].id)
        logins = await tx.audit.list(action="auth.login")
    assert [e.details["i"] for e in page + rest] == [4, 3, 2, 1, 0]
    assert [e.details["i"] for e in logins] == [3, 1]


async def test_roots_created_together_get_their_events_and_audit_entries(store: Store) -> None:
    user = await create_user(store)
    roots = [make_task(user.id, task=f"root {i}") for i in range(3)]
    entries = [
        NewAuditEntry(
            action="task.submit",
            outcome=AuditOutcome.SUCCESS,
            actor_id=user.id,
            actor=user.username,
            resource_type="task",
            resource_id=str(root.id),
            details={"i": i},
        )
        for i, root in enumerate(roots)
    ]
    first = [NewEvent(type=EventType.TASK_CREATED)]
    async with store.transaction() as tx:
        made = await tx.events.insert_roots(
            [(roots[0], first, entries[0]), (roots[1], first, None), (roots[2], first, entries[2])]
        )
    assert [[e.seq for e in events] for events in made] == [[1], [1], [1]]
    async with store.read() as tx:
        for root in roots:
            assert (await tx.tasks.get(root.id)) == root
            assert [e.type for e in await tx.events.list_after(root.id)] == [EventType.TASK_CREATED]
        audit = await tx.audit.list(action="task.submit")
    assert [(e.resource_id, e.details, e.actor_id) for e in reversed(audit)] == [
        (str(roots[0].id), {"i": 0}, user.id),
        (str(roots[2].id), {"i": 2}, user.id),
    ]


async def test_idempotency_keys_expire(store: Store) -> None:
    user = await create_user(store)
    task = await create_root_task(store, user)
    async with store.transaction() as tx:
        await tx.idempotency.put(user.id, "k1", "h" * 64, task.id, timedelta(hours=24))
        await tx.idempotency.put(user.id, "old", "h" * 64, task.id, timedelta(seconds=-1))
    async with store.transaction() as tx:
        record = await tx.idempotency.get(user.id, "k1")
        assert await tx.idempotency.get(user.id, "old") is None
        # An expired key can be used again.
        await tx.idempotency.put(user.id, "old", "g" * 64, task.id, timedelta(hours=1))
        assert await tx.idempotency.delete_expired() == 0
    assert record is not None
    assert record.task_id == task.id


async def test_migrations_build_exactly_the_declared_tables(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from devteam.storage.tables import metadata

    def diff(sync_conn: object) -> list[object]:
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})  # type: ignore[arg-type]
        return list(compare_metadata(context, metadata))

    async with store.db.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_writes_refuse_what_the_columns_refuse_and_write_nothing(store: Store) -> None:
    user = await create_user(store)
    fine = make_task(user.id, task="a root that is fine")
    naive = make_task(user.id, task="a root made at a naive time")
    naive = naive.model_copy(update={"created_at": naive.created_at.replace(tzinfo=None)})
    first = [NewEvent(type=EventType.TASK_CREATED)]
    with pytest.raises(Exception, match="naive datetime"):
        async with store.transaction() as tx:
            await tx.events.insert_roots([(fine, first, None), (naive, first, None)])
    async with store.read() as tx:
        assert await tx.tasks.get(fine.id) is None, "nothing of a refused write is kept"
    if store.db.is_sqlite:
        return  # SQLite keeps a text of any length in a VARCHAR(n) column.
    too_long = make_task(user.id, task="a root whose project is too long")
    too_long = too_long.model_copy(update={"project_id": "p" * 65})
    with pytest.raises(Exception, match="value too long"):
        async with store.transaction() as tx:
            await tx.events.insert_roots([(fine, first, None), (too_long, first, None)])
    async with store.read() as tx:
        assert await tx.tasks.get(fine.id) is None, "nothing of a refused write is kept"
