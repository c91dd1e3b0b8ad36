"""indexes for the retention purge

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 03:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Each purge batch finds its oldest rows through these instead of a full scan.
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_ts", ["ts"], unique=False)
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.create_index("ix_refresh_tokens_expires_at", ["expires_at"], unique=False)
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tasks_roots_finished",
            ["finished_at"],
            unique=False,
            postgresql_where=sa.text("parent_id IS NULL AND finished_at IS NOT NULL"),
            sqlite_where=sa.text("parent_id IS NULL AND finished_at IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_tasks_roots_finished",
            postgresql_where=sa.text("parent_id IS NULL AND finished_at IS NOT NULL"),
            sqlite_where=sa.text("parent_id IS NULL AND finished_at IS NOT NULL"),
        )
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_refresh_tokens_expires_at")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_ts")
