"""SQLite through aiosqlite with one hand-off to its thread per statement.

aiosqlite runs each sqlite3 call on its own thread and hands the result back to
the event loop; SQLAlchemy's adapter makes four such calls per statement (open a
cursor, execute, fetch the rows, close the cursor), each a queue put, a thread
wake-up and a wake-up of the event loop. Statements take microseconds; the
hand-offs took most of an orchestration transaction's time on SQLite. Here a
statement is one call: the cursor opened, executed, read and closed on
aiosqlite's thread in one go, its rows kept in memory as SQLAlchemy's adapter
keeps them anyway; a transaction's BEGIN goes with its first statement.

Plugged in as the DBAPI module of the engine (`create_async_engine(..., module=)`),
so every statement of the SQLite backend goes this way.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

_Outcome = tuple[Any, list[Any], int, int | None]
_BEGINS = frozenset({"BEGIN", "BEGIN IMMEDIATE", "BEGIN DEFERRED", "BEGIN EXCLUSIVE"})
"""(description, rows, rowcount, lastrowid) of a statement."""


def _run(
    conn: sqlite3.Connection, begin: str | None, operation: str, parameters: Any, many: bool
) -> _Outcome:
    """On aiosqlite's thread: one statement, start to end (after `begin`, the transaction's
    BEGIN held back until now)."""
    if begin is not None:
        conn.execute(begin)
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class OneCallCursor(AsyncAdapt_aiosqlite_cursor):
    """A cursor whose statements each run in one call on aiosqlite's thread."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    _awaitable_cursor_close = False

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        # No aiosqlite cursor: each statement opens and closes its own sqlite3 cursor.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass

    async def _async_soft_close(self) -> None:
        return None

    def close(self) -> None:
        self._rows.clear()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        return self._run(operation, parameters, many=False)

    def executemany(self, operation: Any, seq_of_parameters: Sequence[Any]) -> Any:
        return self._run(operation, seq_of_parameters, many=True)

    def _run(self, operation: Any, parameters: Any, *, many: bool) -> None:
        adapted = self._adapt_connection
        if isinstance(adapted, OneCallConnection) and adapted.hold_begin(operation, parameters):
            self._description, self._rowcount, self._lastrowid = None, -1, None
            self._rows = collections.deque()
            return
        try:
            outcome = await_(self._call(operation, parameters, many))
        except Exception as error:
            self._adapt_connection._handle_exception(error)
        self._description, rows, self._rowcount, self._lastrowid = outcome
        self._rows = collections.deque(rows)

    async def _call(self, operation: Any, parameters: Any, many: bool) -> _Outcome:
        connection = self._connection
        adapted = self._adapt_connection
        async with adapted._execute_mutex:
            begin = adapted.take_begin() if isinstance(adapted, OneCallConnection) else None
            outcome: _Outcome = await connection._execute(
                _run, connection._conn, begin, operation, parameters, many
            )
            return outcome


class OneCallConnection(AsyncAdapt_aiosqlite_connection):
    """A connection whose BEGIN goes with the transaction's first statement (one call to
    aiosqlite's thread fewer per transaction; a transaction with no statement is never
    begun, so its COMMIT or ROLLBACK has nothing to do)."""

    __slots__ = ("_held_begin",)
    _cursor_cls = OneCallCursor  # type: ignore[assignment]

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self._held_begin: str | None = None

    def hold_begin(self, operation: Any, parameters: Any) -> bool:
        """Hold back a BEGIN (with no parameters) until the next statement."""
        if parameters or not isinstance(operation, str) or operation not in _BEGINS:
            return False
        if self._held_begin is not None:
            raise self.dbapi.OperationalError("cannot start a transaction within a transaction")
        self._held_begin = operation
        return True

    def take_begin(self) -> str | None:
        begin, self._held_begin = self._held_begin, None
        return begin

    def cursor(self, server_side: bool = False) -> Any:
        if server_side and self._held_begin is not None:
            # A server-side cursor runs on aiosqlite's own cursor: begin first.
            self.cursor().execute("SELECT 1")
        return super().cursor(server_side)

    def commit(self) -> None:
        if self.take_begin() is None:
            super().commit()

    def rollback(self) -> None:
        if self.take_begin() is None:
            super().rollback()


class OneCallDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """aiosqlite as SQLAlchemy adapts it, with `OneCallCursor` for its cursors."""

    def connect(self, *arg: Any, **kw: Any) -> OneCallConnection:
        adapted = super().connect(*arg, **kw)
        return OneCallConnection(self, adapted._connection)


def one_call_dbapi() -> OneCallDBAPI:
    import aiosqlite

    return OneCallDBAPI(aiosqlite, sqlite3)
