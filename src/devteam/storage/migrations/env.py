"""Alembic environment: runs on a connection handed over by `devteam.storage.migrate`."""

from __future__ import annotations

from alembic import context

from devteam.storage.tables import metadata

config = context.config
connection = config.attributes.get("connection")


def run_with_connection() -> None:
    assert connection is not None
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run_with_connection()
elif context.is_offline_mode():
    run_offline()
else:
    raise RuntimeError("run migrations with `devteam migrate`")
