"""trace ids: the task's trace context, each event's trace id

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 04:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("events", sa.Column("trace_id", sa.String(length=32), nullable=True))
    op.add_column("tasks", sa.Column("trace_parent", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("trace_parent")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("trace_id")
