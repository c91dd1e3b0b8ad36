"""The storage facade: transactions that hand out repositories bound to them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cached_property
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from devteam.storage.database import Database
from devteam.storage.repositories.audit import AuditRepository
from devteam.storage.repositories.events import EventRepository
from devteam.storage.repositories.idempotency import IdempotencyRepository
from devteam.storage.repositories.projects import ProjectRepository
from devteam.storage.repositories.tasks import TaskRepository
from devteam.storage.repositories.tokens import RefreshTokenRepository
from devteam.storage.repositories.users import UserRepository
from devteam.storage.repositories.webhooks import WebhookRepository


class UnitOfWork:
    """The repositories of one transaction; all of them commit or none does."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.memo: dict[str, Any] = {}
        """Facts computed once per transaction (e.g. running counts), kept up to date by
        whoever changes them."""

    @cached_property
    def users(self) -> UserRepository:
        return UserRepository(self.conn)

    @cached_property
    def refresh_tokens(self) -> RefreshTokenRepository:
        return RefreshTokenRepository(self.conn)

    @cached_property
    def tasks(self) -> TaskRepository:
        return TaskRepository(self.conn)

    @cached_property
    def events(self) -> EventRepository:
        return EventRepository(self.conn)

    @cached_property
    def audit(self) -> AuditRepository:
        return AuditRepository(self.conn)

    @cached_property
    def idempotency(self) -> IdempotencyRepository:
        return IdempotencyRepository(self.conn)

    @cached_property
    def webhooks(self) -> WebhookRepository:
        return WebhookRepository(self.conn)

    @cached_property
    def projects(self) -> ProjectRepository:
        return ProjectRepository(self.conn)


class Store:
    def __init__(self, db: Database) -> None:
        self.db = db

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[UnitOfWork]:
        """A write transaction; everything done through it commits together."""
        async with self.db.transaction() as conn:
            yield UnitOfWork(conn)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[UnitOfWork]:
        async with self.db.read() as conn:
            yield UnitOfWork(conn)

    @asynccontextmanager
    async def read_statement(self) -> AsyncIterator[UnitOfWork]:
        """Repositories for one read statement, outside any transaction: one round trip.

        For several statements that must agree, use `read()`.
        """
        async with self.db.read_statement() as conn:
            yield UnitOfWork(conn)

    @asynccontextmanager
    async def write_statement(self) -> AsyncIterator[UnitOfWork]:
        """Repositories for one write statement, atomic by itself (one round trip on
        Postgres). For several writes that must commit together, use `transaction()`."""
        async with self.db.write_statement() as conn:
            yield UnitOfWork(conn)

    async def ping(self) -> None:
        await self.db.ping()

    async def warm(self) -> None:
        """Open the connection pool's connections now (see `Database.warm`)."""
        await self.db.warm()

    async def close(self) -> None:
        await self.db.close()
