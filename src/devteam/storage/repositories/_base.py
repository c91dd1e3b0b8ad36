from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection


class Repository:
    """A repository works inside the transaction of the connection it is given."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    @property
    def dialect(self) -> str:
        return self.conn.dialect.name
