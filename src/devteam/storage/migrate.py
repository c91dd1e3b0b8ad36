"""Apply Alembic migrations programmatically (at start-up and with `devteam migrate`)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from devteam.storage.database import Database

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant: replicas starting together take turns instead of racing on DDL.
_PG_MIGRATION_LOCK = 0x64657674  # "devt"


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url:
        config.set_main_option("sqlalchemy.url", url)
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to `revision`; safe to run from several processes at once."""

    def _run(sync_conn: sa.Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = sync_conn
        command.upgrade(config, revision)

    async with db.engine.connect() as conn:
        if not db.is_sqlite:
            await conn.execute(sa.select(sa.func.pg_advisory_lock(_PG_MIGRATION_LOCK)))
            await conn.commit()
        try:
            await conn.run_sync(_run)
            await conn.commit()
        finally:
            if not db.is_sqlite:
                await conn.execute(sa.select(sa.func.pg_advisory_unlock(_PG_MIGRATION_LOCK)))
                await conn.commit()


async def current_revision(db: Database) -> str | None:
    def _current(sync_conn: sa.Connection) -> str | None:
        return MigrationContext.configure(sync_conn).get_current_revision()

    async with db.engine.connect() as conn:
        return await conn.run_sync(_current)
