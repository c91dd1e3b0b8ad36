"""The webhook outbox on SQLite and Postgres: dispatchers claim due rows without overlap."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from devteam.domain.webhooks import DeliveryAttempt, DeliveryStatus, WebhookEvent
from devteam.storage import Store
from devteam.storage.repositories.webhooks import Outcome
from devteam.storage.types import utcnow
from tests.factories import create_root_task, create_user


async def test_concurrent_claims_never_overlap_and_leases_expire(store: Store) -> None:
    user = await create_user(store)
    task = await create_root_task(store, user)
    now = utcnow()
    async with store.transaction() as tx:
        for i in range(30):
            url = f"https://hooks.example.com/{i}"
            await tx.webhooks.add(uuid.uuid4(), task.id, WebhookEvent.COMPLETED, url, now)
        await tx.webhooks.add(
            uuid.uuid4(), task.id, WebhookEvent.FAILED, "https://later.example.com", now
        )
        await tx.conn.exec_driver_sql(
            "UPDATE webhook_deliveries SET next_attempt_at = created_at + interval '1 hour' "
            "WHERE url = 'https://later.example.com'"
            if store.db.dialect == "postgresql"
            else "UPDATE webhook_deliveries SET next_attempt_at = datetime(created_at, '+1 hour') "
            "WHERE url = 'https://later.example.com'"
        )
    lease = now + timedelta(seconds=30)

    async def claim(owner: str) -> list[uuid.UUID]:
        taken: list[uuid.UUID] = []
        while True:
            async with store.transaction() as tx:
                batch = await tx.webhooks.claim(owner, utcnow(), lease, 4)
            if not batch:
                return taken
            taken += [c.delivery.id for c in batch]

    claims = await asyncio.gather(*(claim(f"dispatcher-{i}") for i in range(3)))
    everything = [d for claimed in claims for d in claimed]
    assert len(everything) == len(set(everything)) == 30
    # Leased rows are not claimed again until the lease ends; then they are.
    async with store.transaction() as tx:
        assert await tx.webhooks.claim("late", utcnow(), lease, 100) == []
        later = lease + timedelta(seconds=1)
        again = await tx.webhooks.claim("late", later, later + timedelta(seconds=30), 100)
    assert len(again) == 30


async def test_an_outcome_is_recorded_only_by_the_lease_holder(store: Store) -> None:
    user = await create_user(store)
    task = await create_root_task(store, user)
    now = utcnow()
    delivery_id = uuid.uuid4()
    async with store.transaction() as tx:
        await tx.webhooks.add(
            delivery_id, task.id, WebhookEvent.COMPLETED, "https://h.example", now
        )
        (claimed,) = await tx.webhooks.claim("a", now, now + timedelta(seconds=30), 10)
    assert claimed.payload is None
    attempt = DeliveryAttempt(
        at=now, status_code=503, error="the receiver answered 503", duration_ms=3.0
    )
    retry_at = now + timedelta(seconds=5)
    outcome = Outcome(attempt, DeliveryStatus.PENDING, retry_at, '{"id": 1}')
    async with store.transaction() as tx:
        assert not await tx.webhooks.record(delivery_id, "b", outcome)
        assert await tx.webhooks.record(delivery_id, "a", outcome)
        (delivery,) = await tx.webhooks.for_task(task.id)
        # Not due before its next attempt; due (with the same body) after.
        assert await tx.webhooks.claim("a", now, now + timedelta(seconds=30), 10) == []
        (again,) = await tx.webhooks.claim("b", retry_at, retry_at + timedelta(seconds=30), 10)
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.attempts == 1
    assert delivery.history == [attempt]
    assert delivery.last_status_code == 503
    assert again.payload == '{"id": 1}'
