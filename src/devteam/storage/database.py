"""The async engine and its transactions, on SQLite or Postgres.

SQLite allows one writer at a time. Rather than let concurrent writers fail with
"database is locked", write transactions in one process queue on an asyncio lock
and start with `BEGIN IMMEDIATE` (which takes the write lock up front, so a reader
never has to upgrade and deadlock); other processes wait through `busy_timeout`.
Postgres runs write transactions concurrently and relies on row locks.

A pooled Postgres connection is checked with a ping before use only when it sat
idle for more than `PING_AFTER_IDLE_S` (as HikariCP does): a connection used a
moment ago is alive, and pinging each checkout would cost three round trips.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from devteam.storage.sqlite import one_call_dbapi

_IMMEDIATE = "devteam_immediate"
_NO_TRANSACTION = "devteam_no_transaction"

T = TypeVar("T")

PING_AFTER_IDLE_S = 1.0
"""A pooled connection idle for longer is pinged before use; a dead one is replaced."""


class Database:
    """An async engine plus read and write transactions that suit its dialect."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = make_url(url)
        self.dialect = self.url.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo, "pool_reset_on_return": None}
        if self.dialect == "sqlite":
            database = self.url.database or ""
            if database and database != ":memory:":
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
            kwargs["module"] = one_call_dbapi()
            if database in ("", ":memory:"):
                kwargs["poolclass"] = NullPool
            else:
                # Last in, first out: the connection used a moment ago keeps its page cache
                # (valid while no other connection wrote) and its prepared statements; taken
                # in turn, each of a burst's connections started cold.
                kwargs["pool_use_lifo"] = True
        else:
            # Last in, first out: a quiet service keeps using the few connections that are
            # warm (their statements prepared), rather than cycling through all of them.
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_use_lifo=True)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        self._write_lock = asyncio.Lock()
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine)
        else:
            _ping_idle_connections(self.engine)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed when the block ends, rolled back on error."""
        if self.is_sqlite:
            async with self._write_lock, self.engine.connect() as conn:
                await conn.execution_options(**{_IMMEDIATE: True})
                async with conn.begin():
                    yield conn
        else:
            async with self._driver_transaction() as conn:
                yield conn

    @asynccontextmanager
    async def _driver_transaction(self) -> AsyncIterator[AsyncConnection]:
        """A Postgres transaction begun and ended on the driver's connection.

        SQLAlchemy's connection is in autocommit (it would begin lazily, at its own
        first statement), so its statements and the repositories' statements on the
        driver (see `driver_connection`) run in the same transaction.
        """
        async with self.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            driver = await driver_connection(conn)
            await _unless_cancelled(conn, driver, "BEGIN")
            try:
                yield conn
            except BaseException:
                await _rollback(conn, driver)
                raise
            await _unless_cancelled(conn, driver, "COMMIT")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction (a consistent snapshot on both databases)."""
        if self.is_sqlite:
            async with self.engine.connect() as conn, conn.begin():
                yield conn
        else:
            async with self._driver_transaction() as conn:
                yield conn

    @asynccontextmanager
    async def read_statement(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one read statement, outside any transaction.

        A single statement reads a consistent snapshot by itself, on both
        databases; without BEGIN and COMMIT it takes one round trip, not three.
        """
        async with self.engine.connect() as conn:
            if self.is_sqlite:
                await conn.execution_options(**{_NO_TRANSACTION: True})
            else:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    @asynccontextmanager
    async def write_statement(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one write statement, atomic by itself.

        On Postgres it runs outside BEGIN/COMMIT (one round trip, not three); on
        SQLite, whose writers take turns, it is a write transaction.
        """
        if self.is_sqlite:
            async with self.transaction() as conn:
                yield conn
        else:
            async with self.engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                yield conn

    async def warm(self) -> None:
        """Open the pool's connections now (Postgres), so the first burst of work does not
        pay for setting them up (a few milliseconds of CPU each)."""
        if self.is_sqlite:
            return
        size = self.engine.pool.size()  # type: ignore[attr-defined]
        async with contextlib.AsyncExitStack() as stack:
            conns = [await stack.enter_async_context(self.engine.connect()) for _ in range(size)]
            for conn in conns:
                await conn.exec_driver_sql("SELECT 1")

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()


async def driver_connection(conn: AsyncConnection) -> Any:
    """The driver's own connection under `conn` (an `asyncpg.Connection` on Postgres), for
    the few hot statements whose cost through SQLAlchemy is mostly SQLAlchemy's.

    Its statements run in the transaction of `conn` (see `Database.transaction`); run
    them through `on_driver`, which raises what SQLAlchemy would.
    """
    sync = conn.sync_connection
    if sync is not None and not sync.invalidated and not sync.closed:
        # Connected: the pooled connection is at hand (no trip through a greenlet).
        return sync.connection.driver_connection
    return (await conn.get_raw_connection()).driver_connection


async def on_driver(conn: AsyncConnection, call: Awaitable[T], statement: str) -> T:
    """Await `call`, a statement on the driver's connection under `conn`; its errors
    are raised as SQLAlchemy raises them (IntegrityError, ...), and a connection it
    finds closed is invalidated, so the pool replaces it."""
    try:
        return await call
    except asyncpg.InternalClientError:
        # The protocol is stuck mid-operation: the server ended the connection (an
        # error still being read when the socket closed). Closed now, it is handled as
        # the lost connection it is.
        (await driver_connection(conn)).terminate()
        await conn.exec_driver_sql("SELECT 1")
        raise
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        if _driver_closed(conn):
            # A lost connection goes through SQLAlchemy's own handling, which replaces
            # every pooled connection as old as this one and raises what it raises.
            await conn.exec_driver_sql("SELECT 1")
        if isinstance(exc, OSError):
            raise
        dbapi = conn.dialect.loaded_dbapi
        for kind, name in _DBAPI_ERRORS:
            if isinstance(exc, kind):
                adapted = getattr(dbapi, name)(exc.args[0] if exc.args else str(exc), exc)
                break
        raise DBAPIError.instance(
            statement, None, adapted, dbapi.Error, dialect=conn.dialect
        ) from exc


# asyncpg's exceptions and the DB-API classes of SQLAlchemy's asyncpg adapter they map
# to, most specific first (as SQLAlchemy maps them).
_DBAPI_ERRORS: tuple[tuple[type[Exception], str], ...] = (
    (asyncpg.IntegrityConstraintViolationError, "IntegrityError"),
    (asyncpg.SyntaxOrAccessError, "ProgrammingError"),
    (asyncpg.InterfaceError, "InterfaceError"),
    (asyncpg.PostgresError, "Error"),
)


def _driver_closed(conn: AsyncConnection) -> bool:
    raw = conn.sync_connection.connection if conn.sync_connection is not None else None
    return raw is None or raw.driver_connection is None or raw.driver_connection.is_closed()


async def _unless_cancelled(conn: AsyncConnection, driver: Any, statement: str) -> None:
    """Run BEGIN or COMMIT; cancelled midway, the server may or may not have run it, so
    the connection is closed at once rather than handed out again in an unknown state."""
    try:
        await on_driver(conn, driver.execute(statement), statement)
    except asyncio.CancelledError:
        await _discard(conn, driver)
        raise


async def _rollback(conn: AsyncConnection, driver: Any) -> None:
    """Roll back the driver-level transaction of `conn`, unless its connection is gone.

    Not shielded: the connection goes back to the pool only once the rollback is done
    (a shielded rollback still running when a cancelled caller returned it collided
    with its next user). Cancelled or failed midway, the connection is closed.
    """
    if conn.invalidated or driver.is_closed():
        return
    try:
        await driver.execute("ROLLBACK")
    except asyncio.CancelledError:
        await _discard(conn, driver)
        raise
    except Exception:
        # The connection is in no known state: never hand it out again.
        await conn.invalidate()


async def _discard(conn: AsyncConnection, driver: Any) -> None:
    """Close a connection left in an unknown state and take it out of the pool."""
    driver.terminate()
    with contextlib.suppress(Exception):
        await conn.invalidate()


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _: Any) -> None:
        # Take transaction control from the driver so BEGIN is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        options = conn.get_execution_options()
        if options.get(_NO_TRANSACTION, False):
            return  # each statement commits by itself
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get(_IMMEDIATE, False) else "BEGIN")


def _ping_idle_connections(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "checkin")
    def _on_checkin(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since <= PING_AFTER_IDLE_S:
            return
        try:
            sync_engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool drops this connection and checks out another one.
            raise DisconnectionError(f"a pooled connection is dead: {exc}") from exc


def connection_lost(exc: BaseException) -> bool:
    """Whether `exc` says the database connection went away (server restarted, connection
    terminated, network cut) rather than that the statement was wrong: trying again on a
    fresh connection may succeed."""
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError))
    return isinstance(exc, (DisconnectionError, PoolTimeoutError, ConnectionError))
