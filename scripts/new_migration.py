"""Generate an Alembic revision from the difference between the tables and the migrations.

    uv run python scripts/new_migration.py "add a column"

It migrates a scratch SQLite database to the latest revision, compares it with
`src/devteam/storage/tables.py` and writes the new revision file. Review the file
(and test it on Postgres: `uv run pytest tests/integration/storage`) before committing.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa
from alembic import command

from devteam.storage.database import Database
from devteam.storage.migrate import alembic_config, head_revision, upgrade


async def main(message: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        db = Database(f"sqlite+aiosqlite:///{Path(scratch) / 'scratch.db'}")
        await upgrade(db)
        head = head_revision() or "0000"
        rev_id = f"{int(head) + 1:04d}" if head.isdigit() else None

        def generate(sync_conn: sa.Connection) -> None:
            config = alembic_config()
            config.attributes["connection"] = sync_conn
            command.revision(config, message=message, autogenerate=True, rev_id=rev_id)

        async with db.engine.connect() as conn:
            await conn.run_sync(generate)
        await db.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1]))
