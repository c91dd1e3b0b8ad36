from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

M = TypeVar("M", bound=BaseModel)


class Repository:
    """A repository works inside the transaction of the connection it is given."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    @property
    def dialect(self) -> str:
        return self.conn.dialect.name


def trusted(model: type[M], values: dict[str, Any], fields_set: set[str]) -> M:
    """An instance of `model` holding `values` (every field, already of its type) as they are.

    What `model.model_construct` does, for models without extra fields, private
    attributes or post-init hooks, at a fifth of its cost (and of validation's): the
    rows of our own database were validated before they were written.
    `fields_set` is what validation would have recorded as explicitly set.
    """
    instance = model.__new__(model)
    object.__setattr__(instance, "__dict__", values)
    object.__setattr__(instance, "__pydantic_fields_set__", fields_set)
    object.__setattr__(instance, "__pydantic_extra__", None)
    object.__setattr__(instance, "__pydantic_private__", None)
    return instance


_PG_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


def pg_array_types(table: sa.Table, columns: Iterable[str]) -> dict[str, str]:
    """The Postgres array type of each of `columns` of `table`, without lengths: an
    explicit cast to varchar(n) would cut a longer value short, where an insert's own
    conversion refuses it."""
    return {
        c: re.sub(r"\(\d+\)", "", table.c[c].type.compile(dialect=_PG_DIALECT)) + "[]"
        for c in columns
    }


def pg_insert_unnest(
    table: str, columns: Sequence[str], types: Mapping[str, str], first: int
) -> str:
    """An insert into `table` of rows whose every column is one array parameter,
    numbered from `first` (see `transposed`)."""
    quoted = ", ".join(f'"{c}"' for c in columns)
    arrays = ", ".join(f"${first + i}::{types[c]}" for i, c in enumerate(columns))
    return f"INSERT INTO {table} ({quoted}) SELECT * FROM unnest({arrays})"


def transposed(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows of `width` values as `width` columns (the parameters of `pg_insert_unnest`)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]
