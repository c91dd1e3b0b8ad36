"""The audit log, for admins."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from devteam.api.deps import StoreDep
from devteam.api.docs import error_responses
from devteam.api.pagination import decode_cursor, encode_cursor
from devteam.api.security import require
from devteam.domain.audit import AuditEntry, AuditOutcome
from devteam.domain.errors import ErrorCode
from devteam.domain.permissions import Permission

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(
        use_attribute_docstrings=True,
        json_schema_extra={
            "examples": [
                {
                    "id": 42,
                    "ts": "2025-01-31T09:30:00Z",
                    "action": "auth.login",
                    "outcome": "failure",
                    "actor_id": None,
                    "actor": "ada",
                    "resource_type": "user",
                    "resource_id": None,
                    "client_ip": "203.0.113.7",
                    "request_id": "4f1d2b6c9e0a4b7d8c3e5f6a7b8c9d0e",
                    "details": {"reason": "unknown user"},
                }
            ]
        },
    )

    id: int
    """Increasing: newer entries have larger ids."""
    ts: datetime
    """When it happened."""
    action: str
    """Dotted verb: `auth.login`, `auth.refresh`, `auth.token_reuse`, `auth.logout`,
    `user.create`, `user.role_change`, `user.deactivate`, `task.submit`, ..."""
    outcome: AuditOutcome
    """`success`, `failure` or `denied`."""
    actor_id: UUID | None
    """The acting user's id; null when unknown (a failed login)."""
    actor: str | None
    """Username of whoever acted (for a failed login: the username tried)."""
    resource_type: str | None
    """What was acted on: `user`, `task`, `rules`, ..."""
    resource_id: str | None
    """Which one, when it has an id."""
    client_ip: str | None
    """The client's address as the service saw it."""
    request_id: str | None
    """The request's `X-Request-ID`."""
    details: dict[str, Any]
    """More about the action (e.g. the reason of a failure)."""

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryOut:
        return cls.model_validate(entry.model_dump())


class AuditPage(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    items: list[AuditEntryOut]
    """Newest first."""
    next_cursor: str | None
    """Pass as `cursor` for the next (older) page; null on the last page."""


@router.get(
    "",
    summary="Read the audit log (admin)",
    description="Newest first; filter by `actor` (username) and `action` (e.g. `auth.login`).",
    response_model=AuditPage,
    responses=error_responses(
        ErrorCode.UNAUTHORIZED,
        (ErrorCode.FORBIDDEN, "this needs the audit:read permission"),
        (ErrorCode.VALIDATION_ERROR, "cursor: not a cursor from a previous page"),
        ErrorCode.RATE_LIMITED,
    ),
    dependencies=[require(Permission.AUDIT_READ)],
)
async def list_audit(
    store: StoreDep,
    actor: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    action: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> AuditPage:
    before = decode_cursor(cursor, {"before_id": int})["before_id"] if cursor else None
    async with store.read() as tx:
        entries = await tx.audit.list(actor=actor, action=action, before_id=before, limit=limit + 1)
    page = entries[:limit]
    more = len(entries) > limit
    return AuditPage(
        items=[AuditEntryOut.of(e) for e in page],
        next_cursor=encode_cursor({"before_id": page[-1].id}) if more else None,
    )
