from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel
from pydantic_core import to_json
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


# On Postgres, rows written together go in one JSON parameter (an array of objects keyed
# by column) rather than one array parameter per column: the driver checks every element
# of an array parameter in Python, which cost more than the rest of the statement.


def pg_types(table: sa.Table, columns: Iterable[str]) -> dict[str, str]:
    """The Postgres type of each of `columns` of `table`, without lengths: the write's own
    conversion to varchar(n) then refuses a longer value (an explicit cast would cut it)."""
    return {
        c: re.sub(r"\(\d+\)", "", table.c[c].type.compile(dialect=_PG_DIALECT)) for c in columns
    }


def pg_records(param: int, types: Mapping[str, str], alias: str) -> str:
    """The rows of JSON parameter `$param` (see `json_records`) as a table `alias` of
    `types`' columns, each value read from JSON as its type reads it."""
    columns = ", ".join(f'"{c}" {kind}' for c, kind in types.items())
    return f"jsonb_to_recordset(${param}::jsonb) AS {alias}({columns})"


def pg_value(alias: str, column: str, kind: str) -> str:
    """Column `column` of `pg_records` table `alias`: a JSON null in a JSONB column stays
    a JSON null, as the driver writes None there (jsonb_to_recordset makes it SQL NULL)."""
    if kind == "JSONB":
        return f"COALESCE({alias}.\"{column}\", 'null'::jsonb)"
    return f'{alias}."{column}"'


def pg_insert_records(table: str, types: Mapping[str, str], param: int) -> str:
    """An insert into `table` of `types`' columns of the rows of JSON parameter `$param`."""
    quoted = ", ".join(f'"{c}"' for c in types)
    values = ", ".join(pg_value("r", c, kind) for c, kind in types.items())
    return f"INSERT INTO {table} ({quoted}) SELECT {values} FROM {pg_records(param, types, 'r')}"


def json_records(rows: Iterable[Mapping[str, Any]], *, times: Iterable[str] = ()) -> str:
    """Rows (column name to value; JSON columns as their Python values) as the JSON
    parameter of `pg_records`. `times` names the columns holding datetimes: a naive one
    is refused, as the UTC column types refuse it."""
    rows = list(rows)
    for column in times:
        for row in rows:
            value = row.get(column)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"naive datetime given to the UTC column {column}")
    # pydantic-core's encoder writes UUIDs and datetimes itself: a fifth of the json
    # module's cost with a callback for them.
    return to_json(rows).decode()
