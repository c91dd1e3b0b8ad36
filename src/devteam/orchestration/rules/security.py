"""Rules that put security events of running work on the audit log."""

from __future__ import annotations

from devteam.domain.audit import AuditOutcome, NewAuditEntry
from devteam.domain.enums import TaskStatus
from devteam.domain.errors import ErrorCode
from devteam.orchestration.rules.base import TaskRule, TransitionContext
from devteam.security.audit import AuditAction

S = TaskStatus


class AuditWorkspaceTampering(TaskRule):
    """An attempt that found its worktree tampered with leaves an audit entry.

    A `.git` planted in a worktree is an attempt to run commands on the server
    (usually a prompt injection in the project): admins must see it, with the task
    and who submitted it, in the same transaction as the failure.
    """

    FROM = frozenset({S.IN_PROGRESS})
    TO = frozenset({S.FAILED, S.DELEGATED})

    async def after_transition(self, ctx: TransitionContext) -> None:
        error = ctx.updates.get("error") or {}
        if error.get("code") != ErrorCode.WORKSPACE_TAMPERED.value:
            return
        task = ctx.task
        await ctx.tx.audit.append(
            NewAuditEntry(
                action=AuditAction.WORKSPACE_TAMPERED.value,
                outcome=AuditOutcome.DENIED,
                actor="devteam",
                resource_type="task",
                resource_id=str(task.id),
                details={
                    "message": error.get("message", ""),
                    "root_id": str(task.root_id),
                    "project_id": task.project_id,
                    "agent_type": task.agent_type.value if task.agent_type else None,
                    "attempt": task.attempt,
                    "submitted_by": str(task.created_by),
                },
            )
        )
