"""projects

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 03:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import devteam.storage.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("git_url", sa.String(length=2048), nullable=False),
        sa.Column("default_branch", sa.String(length=255), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", devteam.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", devteam.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("refreshed_at", devteam.storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_projects")),
    )


def downgrade() -> None:
    op.drop_table("projects")
