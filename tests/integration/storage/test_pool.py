"""Pooled Postgres connections: one that died while idle is replaced before use."""

from __future__ import annotations

import asyncpg
import pytest
import sqlalchemy as sa

from devteam.storage import Database, database
from tests.servers import POSTGRES_ADMIN_URL

pytestmark = pytest.mark.postgres


async def backend_pid(db: Database) -> int:
    async with db.read() as conn:
        return int(await conn.scalar(sa.text("SELECT pg_backend_pid()")))


async def test_a_connection_killed_while_idle_is_replaced_before_use(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(postgres_url, pool_size=1)
    try:
        first = await backend_pid(db)
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
        finally:
            await admin.close()
        # Any idle time counts now: the checkout pings, finds it dead, takes a new one.
        monkeypatch.setattr(database, "PING_AFTER_IDLE_S", 0.0)
        second = await backend_pid(db)
        assert second != first
        async with db.read_statement() as conn:
            assert await conn.scalar(sa.text("SELECT 1")) == 1
    finally:
        await db.close()


async def test_a_connection_used_a_moment_ago_is_not_pinged(postgres_url: str) -> None:
    db = Database(postgres_url, pool_size=1)
    pings = 0
    dialect = db.engine.sync_engine.dialect
    real_ping = dialect.do_ping

    def counting_ping(dbapi_connection: object) -> bool:
        nonlocal pings
        pings += 1
        return real_ping(dbapi_connection)

    dialect.do_ping = counting_ping  # type: ignore[method-assign]
    try:
        for _ in range(5):
            await backend_pid(db)
        assert pings == 0
    finally:
        await db.close()
