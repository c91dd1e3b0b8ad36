"""SQLAlchemy Core tables: the schema every repository and migration follows."""

from __future__ import annotations

import sqlalchemy as sa

from devteam.storage.types import BigIntPK, JSONType, UTCDateTime

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # Single sign-on: the provider's issuer and the user's subject there (both null for
    # local users). A user is found by this pair, never by username.
    sa.Column("oidc_issuer", sa.String(512), nullable=True),
    sa.Column("oidc_subject", sa.String(255), nullable=True),
    sa.UniqueConstraint("oidc_issuer", "oidc_subject"),
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("jti_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("family_id", sa.Uuid, nullable=False, index=True),
    sa.Column(
        "user_id",
        sa.Uuid,
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("issued_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
    sa.Column("used_at", UTCDateTime, nullable=True),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Column("replaced_by", sa.Uuid, nullable=True),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("root_id", sa.Uuid, nullable=False, index=True),
    sa.Column(
        "parent_id",
        sa.Uuid,
        sa.ForeignKey("tasks.id", ondelete="CASCADE"),
        nullable=True,
        index=True,
    ),
    sa.Column("key", sa.String(64), nullable=True),
    sa.Column("created_by", sa.Uuid, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("agent_type", sa.String(32), nullable=True),
    sa.Column("task_type", sa.String(100), nullable=False),
    sa.Column("task", sa.Text, nullable=False),
    sa.Column("complexity", sa.Integer, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("project_id", sa.String(64), nullable=True),
    sa.Column("metadata", JSONType, nullable=False),
    sa.Column("phase", sa.String(32), nullable=True),
    sa.Column("depends_on", JSONType, nullable=False),
    sa.Column("require_approval", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("budget", JSONType, nullable=True),
    # The explicit plan of a root task (its `subtasks` as submitted), until planned.
    sa.Column("plan", JSONType, nullable=True),
    # Of a root task: {"url", "events"}, where to POST it when it ends.
    sa.Column("webhook", JSONType, nullable=True),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
    sa.Column("version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("result", JSONType, nullable=True),
    sa.Column("error_code", sa.String(64), nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    sa.Column("usage_requests", sa.Integer, nullable=False, server_default="0"),
    sa.Column("usage_input_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("usage_output_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("usage_tool_calls", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
    sa.Column("event_seq", sa.Integer, nullable=False, server_default="0"),
    sa.Column("lease_owner", sa.String(128), nullable=True),
    sa.Column("lease_expires_at", UTCDateTime, nullable=True),
    sa.Column("not_before", UTCDateTime, nullable=True),
    sa.Column("queued_at", UTCDateTime, nullable=True),
    sa.Column("deadline_at", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("trace_parent", sa.String(64), nullable=True),
    # Root tasks of one user, newest first (GET /tasks for a developer); scanned backwards.
    sa.Index(
        "ix_tasks_roots_by_owner",
        "created_by",
        "created_at",
        "id",
        postgresql_where=sa.text("parent_id IS NULL"),
        sqlite_where=sa.text("parent_id IS NULL"),
    ),
    # Every root task, newest first (GET /tasks for an operator).
    sa.Index(
        "ix_tasks_roots",
        "created_at",
        "id",
        postgresql_where=sa.text("parent_id IS NULL"),
        sqlite_where=sa.text("parent_id IS NULL"),
    ),
    # Unfinished work by status, for the scheduler and recovery.
    sa.Index(
        "ix_tasks_active_status",
        "status",
        postgresql_where=sa.text("status NOT IN ('completed', 'failed', 'cancelled')"),
        sqlite_where=sa.text("status NOT IN ('completed', 'failed', 'cancelled')"),
    ),
    # Finished root tasks, oldest first, for the retention purge.
    sa.Index(
        "ix_tasks_roots_finished",
        "finished_at",
        postgresql_where=sa.text("parent_id IS NULL AND finished_at IS NOT NULL"),
        sqlite_where=sa.text("parent_id IS NULL AND finished_at IS NOT NULL"),
    ),
    sa.UniqueConstraint("parent_id", "key"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column(
        "task_id",
        sa.Uuid,
        sa.ForeignKey("tasks.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("subtask_id", sa.Uuid, nullable=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("data", JSONType, nullable=False),
    sa.Column("ts", UTCDateTime, nullable=False),
    sa.Column("trace_id", sa.String(32), nullable=True),
    # One sequence per root task; also the index of replay (`seq > after`).
    sa.UniqueConstraint("task_id", "seq"),
)

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("git_url", sa.String(2048), nullable=False),
    sa.Column("default_branch", sa.String(255), nullable=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_by", sa.Uuid, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("refreshed_at", UTCDateTime, nullable=True),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
    sa.Column("ts", UTCDateTime, nullable=False, index=True),
    sa.Column("actor_id", sa.Uuid, nullable=True),
    sa.Column("actor", sa.String(64), nullable=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("resource_type", sa.String(32), nullable=True),
    sa.Column("resource_id", sa.String(64), nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("client_ip", sa.String(64), nullable=True),
    sa.Column("request_id", sa.String(128), nullable=True),
    sa.Column("details", JSONType, nullable=False),
    sa.Index("ix_audit_log_actor_id", "actor", "id"),
    sa.Index("ix_audit_log_action_id", "action", "id"),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column(
        "user_id",
        sa.Uuid,
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column(
        "task_id",
        sa.Uuid,
        sa.ForeignKey("tasks.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
)

# The outbox of webhook calls: a row is written in the transaction that finishes a root
# task, then sent (and retried) by the dispatchers of any process, which claim rows with
# a lease.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column(
        "task_id",
        sa.Uuid,
        sa.ForeignKey("tasks.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime, nullable=True),
    sa.Column("lease_owner", sa.String(128), nullable=True),
    sa.Column("lease_expires_at", UTCDateTime, nullable=True),
    sa.Column("last_status_code", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    # The body as first sent: every retry sends the same bytes.
    sa.Column("payload", sa.Text, nullable=True),
    sa.Column("history", JSONType, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("delivered_at", UTCDateTime, nullable=True),
    # Deliveries due, for the dispatchers.
    sa.Index(
        "ix_webhook_deliveries_due",
        "next_attempt_at",
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    ),
)
