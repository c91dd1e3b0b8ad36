"""Column types that behave the same on SQLite and Postgres."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp.

    SQLite stores timestamps as text without an offset and hands back naive
    datetimes; this type stores UTC and always returns an aware UTC datetime.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        assert isinstance(moment, datetime)
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
"""JSON on SQLite, JSONB on Postgres."""

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""An auto-incrementing key: SQLite only auto-increments INTEGER PRIMARY KEY."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime | None) -> datetime | None:
    """`value` as a UTC column takes it on Postgres through the driver (asyncpg stores
    the instant of an aware datetime); a naive one is refused, as `UTCDateTime` does."""
    if value is not None and value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value
