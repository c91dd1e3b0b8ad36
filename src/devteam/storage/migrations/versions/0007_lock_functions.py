"""lock functions: a lock and what it guards read in one round trip (Postgres)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 10:30:00

Two steps of the orchestration's transactions take a lock and then read what the
lock guards: the trees' root rows, then the trees' fingerprints; the start lock,
then the attempts running now. The read must see everything committed before the
lock was granted, so it cannot share the lock's statement (one statement reads one
snapshot, taken before it waited). A PL/pgSQL function runs each of its statements
on a new snapshot (read committed), so one call does both: one round trip, not
two. SQLite has no functions and needs none (its writers take turns).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOCK_TREES = """
CREATE OR REPLACE FUNCTION devteam_lock_trees(roots uuid[])
RETURNS TABLE (tree uuid, tasks_in_tree bigint, versions bigint)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- In id order, so two transactions locking the same trees cannot deadlock.
    PERFORM 1 FROM tasks WHERE id = ANY(roots) ORDER BY id FOR UPDATE;
    RETURN QUERY
        SELECT t.root_id, count(*)::bigint, sum(t.version)::bigint
        FROM tasks AS t WHERE t.root_id = ANY(roots) GROUP BY t.root_id;
END
$$
"""

LOCK_STARTS = """
CREATE OR REPLACE FUNCTION devteam_lock_starts(lock_key bigint, running text[])
RETURNS TABLE (owner uuid, agent text, attempts bigint)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    RETURN QUERY
        SELECT t.created_by, t.agent_type::text, count(*)::bigint
        FROM tasks AS t
        WHERE t.status = ANY(running) AND t.lease_owner IS NOT NULL
            -- the partial index of unfinished work: searched, not every task scanned
            AND t.status NOT IN ('completed', 'failed', 'cancelled')
        GROUP BY t.created_by, t.agent_type;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(LOCK_TREES)
    op.execute(LOCK_STARTS)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION IF EXISTS devteam_lock_starts(bigint, text[])")
    op.execute("DROP FUNCTION IF EXISTS devteam_lock_trees(uuid[])")
