"""Retention: delete what is no longer kept, in small batches, never touching running work.

Each batch is one short transaction deleting at most `batch_size` rows it selected
(on Postgres with `FOR UPDATE SKIP LOCKED`), so writers are never blocked for long
and several processes purging at once take different rows instead of waiting for
each other: running the purge in every process of a deployment is harmless.

- Refresh tokens: expired ones, and revoked ones a day after revocation (kept that
  long so the audit log's reuse detection can still name a replayed token). A used
  token of a live session is kept until it expires: reuse detection needs it.
- Audit entries older than the retention.
- Events of root tasks finished longer ago than the events retention.
- Root tasks finished longer ago than the tasks retention, with their subtasks and
  events, and only when nothing in the tree is still running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from devteam.domain.enums import TERMINAL_STATUSES
from devteam.storage.store import Store
from devteam.storage.tables import audit_log, events, refresh_tokens, tasks

REVOKED_TOKENS_KEPT = timedelta(days=1)
"""Revoked refresh tokens stay this long after revocation."""

_TERMINAL = sorted(s.value for s in TERMINAL_STATUSES)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    finished_tasks: timedelta | None = None
    """Root tasks finished longer ago go, with subtasks and events; None keeps them."""
    events: timedelta | None = None
    """Events of root tasks finished longer ago go; None keeps them."""
    audit: timedelta | None = None
    """Audit entries older than this go; None keeps them."""
    batch_size: int = 500


async def purge(store: Store, policy: RetentionPolicy, now: datetime) -> dict[str, int]:
    """Delete everything past its retention at `now`; returns rows deleted per kind."""
    size = policy.batch_size
    purged = {"refresh_tokens": 0, "audit": 0, "events": 0, "tasks": 0}
    purged["refresh_tokens"] = await _batches(
        store, size, lambda conn: _refresh_tokens(conn, now, size)
    )
    if policy.audit is not None:
        cutoff = now - policy.audit
        purged["audit"] = await _batches(store, size, lambda conn: _audit(conn, cutoff, size))
    if policy.events is not None:
        cutoff = now - policy.events
        purged["events"] = await _batches(store, size, lambda conn: _events(conn, cutoff, size))
    if policy.finished_tasks is not None:
        cutoff = now - policy.finished_tasks
        # Fewer roots per batch: each one takes its subtasks and events with it.
        roots = max(1, size // 10)
        purged["tasks"] = await _batches(store, roots, lambda conn: _roots(conn, cutoff, roots))
    return purged


async def _batches(
    store: Store, size: int, batch: Callable[[AsyncConnection], Awaitable[int]]
) -> int:
    """Run `batch` in its own transaction until it finds fewer than `size` rows."""
    total = 0
    while True:
        async with store.transaction() as tx:
            deleted = await batch(tx.conn)
        total += deleted
        if deleted < size:
            return total
        await asyncio.sleep(0)  # let other work in between


def _locked(select: sa.Select[Any], table: sa.Table) -> sa.Select[Any]:
    # Concurrent purges take different rows (Postgres; SQLite has one writer anyway).
    return select.with_for_update(skip_locked=True, of=table)


async def _delete(conn: AsyncConnection, table: sa.Table, ids: sa.Select[Any]) -> int:
    found = [row[0] for row in await conn.execute(ids)]
    if not found:
        return 0
    await conn.execute(sa.delete(table).where(table.c.id.in_(found)))
    return len(found)


async def _refresh_tokens(conn: AsyncConnection, now: datetime, size: int) -> int:
    ids = (
        sa.select(refresh_tokens.c.id)
        .where(
            sa.or_(
                refresh_tokens.c.expires_at < now,
                refresh_tokens.c.revoked_at < now - REVOKED_TOKENS_KEPT,
            )
        )
        .limit(size)
    )
    return await _delete(conn, refresh_tokens, _locked(ids, refresh_tokens))


async def _audit(conn: AsyncConnection, cutoff: datetime, size: int) -> int:
    ids = sa.select(audit_log.c.id).where(audit_log.c.ts < cutoff).order_by(audit_log.c.id)
    return await _delete(conn, audit_log, _locked(ids.limit(size), audit_log))


def _finished_roots(cutoff: datetime) -> sa.Select[Any]:
    """Root tasks finished before `cutoff` with nothing left running in their tree."""
    member = tasks.alias("member")
    running = sa.exists().where(member.c.root_id == tasks.c.id, member.c.status.not_in(_TERMINAL))
    return sa.select(tasks.c.id).where(
        tasks.c.parent_id.is_(None),
        tasks.c.finished_at.is_not(None),
        tasks.c.finished_at < cutoff,
        tasks.c.status.in_(_TERMINAL),
        ~running,
    )


async def _events(conn: AsyncConnection, cutoff: datetime, size: int) -> int:
    roots = _finished_roots(cutoff).scalar_subquery()
    ids = sa.select(events.c.id).where(events.c.task_id.in_(roots)).limit(size)
    return await _delete(conn, events, _locked(ids, events))


async def _roots(conn: AsyncConnection, cutoff: datetime, size: int) -> int:
    ids = _locked(_finished_roots(cutoff).order_by(tasks.c.finished_at).limit(size), tasks)
    roots = [row[0] for row in await conn.execute(ids)]
    if not roots:
        return 0
    await conn.execute(sa.delete(events).where(events.c.task_id.in_(roots)))
    # Subtasks in one statement (their links to each other are checked at its end), then roots.
    await conn.execute(
        sa.delete(tasks).where(tasks.c.root_id.in_(roots), tasks.c.parent_id.is_not(None))
    )
    await conn.execute(sa.delete(tasks).where(tasks.c.id.in_(roots)))
    return len(roots)
