"""Reach the real Postgres and Redis servers tests run against.

Locally, a test that needs a server that is not running skips with the reason; in
CI (`CI=true`) it fails instead, so a broken CI machine can never pass by skipping.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import asyncpg
import pytest
import redis

IN_CI = os.environ.get("CI", "").lower() == "true"

POSTGRES_ADMIN_URL = os.environ.get(
    "DEVTEAM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("DEVTEAM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unavailable(reason: str) -> NoReturn:
    """Skip (locally) or fail (in CI) because a server or tool the test needs is missing."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the servers and tools must be there)", pytrace=False)
    pytest.skip(reason)


def asyncpg_url(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://")


def sqlalchemy_url(asyncpg_url: str) -> str:
    return asyncpg_url.replace("postgresql://", "postgresql+asyncpg://", 1)


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=3)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def postgres_reachable() -> str | None:
    """None when Postgres answers, else why not."""
    try:
        asyncio.run(_pg_admin("SELECT 1"))
    except Exception as exc:
        return f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}"
    return None


@contextmanager
def temporary_postgres_database() -> Iterator[str]:
    """Create a database of our own for the block; yields its SQLAlchemy URL."""
    if reason := postgres_reachable():
        unavailable(reason)
    name = f"devteam_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield sqlalchemy_url(f"{base}/{name}")
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def redis_reachable() -> str | None:
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.ping()
        client.close()
    except Exception as exc:
        return f"Redis is not reachable at {REDIS_URL}: {exc}"
    return None


def delete_redis_prefix(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        batch = list(client.scan_iter(match=f"{prefix}:*", count=500))
        if batch:
            client.delete(*batch)
    finally:
        client.close()


def copy_sqlite(template: Path, target: Path) -> str:
    shutil.copyfile(template, target)
    return f"sqlite+aiosqlite:///{target}"


def truncate_postgres(url: str) -> None:
    """Empty every table of the database at `url` (a SQLAlchemy URL)."""
    from devteam.storage.tables import metadata

    names = ", ".join(table.name for table in metadata.sorted_tables)

    async def run() -> None:
        conn = await asyncpg.connect(asyncpg_url(url), timeout=5)
        try:
            await conn.execute(f"TRUNCATE {names} CASCADE")
        finally:
            await conn.close()

    asyncio.run(run())
