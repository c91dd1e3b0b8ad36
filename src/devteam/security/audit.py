"""The audit log: who did what, to what, from where, and how it went.

Entries are only ever appended. Record an entry inside the transaction that does
the action (`tx=`), so the action and its entry commit together or not at all;
without `tx` the entry is written in a transaction of its own (e.g. a refused
login, where nothing else is written).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID

from devteam.domain.audit import AuditOutcome, NewAuditEntry
from devteam.domain.users import User
from devteam.observability.logging import get_logger
from devteam.storage import Store, UnitOfWork

log = get_logger("devteam.audit")

_ACTOR_MAX = 64


class AuditAction(StrEnum):
    LOGIN = "auth.login"
    REFRESH = "auth.refresh"
    TOKEN_REUSE = "auth.token_reuse"
    LOGOUT = "auth.logout"
    USER_CREATE = "user.create"
    USER_ROLE_CHANGE = "user.role_change"
    USER_DEACTIVATE = "user.deactivate"
    USER_ACTIVATE = "user.activate"
    TASK_SUBMIT = "task.submit"
    TASK_CANCEL = "task.cancel"
    TASK_APPROVE = "task.approve"
    RULES_RELOAD = "rules.reload"
    WORKSPACE_TAMPERED = "workspace.tampered"
    PROJECT_ADD = "project.add"
    PROJECT_REFRESH = "project.refresh"
    PROJECT_REMOVE = "project.remove"


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a request came from."""

    client_ip: str | None = None
    request_id: str | None = None


class Auditor:
    """Appends audit entries, stamped with the origin it is bound to."""

    def __init__(self, store: Store, origin: Origin | None = None) -> None:
        self.store = store
        self.origin = origin or Origin()

    def bind(self, origin: Origin) -> Auditor:
        """The same auditor, stamping entries with `origin` (one per request)."""
        return Auditor(self.store, origin)

    async def record(
        self,
        action: AuditAction | str,
        outcome: AuditOutcome,
        *,
        actor: User | str | None = None,
        resource_type: str | None = None,
        resource_id: UUID | str | None = None,
        details: dict[str, Any] | None = None,
        tx: UnitOfWork | None = None,
    ) -> None:
        """Append one entry.

        `actor` is the user who acted, or only a name (e.g. the username a failed
        login tried, or `cli`). Pass `tx` to write in the caller's transaction.
        """
        entry = self.entry(
            action,
            outcome,
            actor=actor,
            resource_type=resource_type,
            resource_id=resource_id,
            details=details,
        )
        if tx is not None:
            await tx.audit.append(entry)
        else:
            async with self.store.transaction() as own:
                await own.audit.append(entry)
        self.log_entry(entry)

    def entry(
        self,
        action: AuditAction | str,
        outcome: AuditOutcome,
        *,
        actor: User | str | None = None,
        resource_type: str | None = None,
        resource_id: UUID | str | None = None,
        details: dict[str, Any] | None = None,
    ) -> NewAuditEntry:
        """The entry `record` would append, for a caller writing it in its own statement
        (then `log_entry` it once written)."""
        if isinstance(actor, User):
            actor_id: UUID | None = actor.id
            actor_name: str | None = actor.username
        else:
            actor_id, actor_name = None, actor
        return NewAuditEntry(
            action=str(action),
            outcome=outcome,
            actor_id=actor_id,
            actor=actor_name[:_ACTOR_MAX] if actor_name is not None else None,
            resource_type=resource_type,
            resource_id=str(resource_id) if resource_id is not None else None,
            client_ip=self.origin.client_ip,
            request_id=self.origin.request_id,
            details=details or {},
        )

    @staticmethod
    def log_entry(entry: NewAuditEntry) -> None:
        """The entry's log line (`record` writes it; a caller appending the entry itself
        calls this after its commit)."""
        log.info(
            "audit",
            action=entry.action,
            outcome=entry.outcome.value,
            actor=entry.actor,
            resource_type=entry.resource_type,
            resource_id=entry.resource_id,
        )
