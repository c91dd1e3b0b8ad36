"""Audit log entries: who did what to which resource, and how it went."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class AuditOutcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


class NewAuditEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    action: str
    """Dotted verb, e.g. `auth.login`, `task.submit`, `user.create`."""
    outcome: AuditOutcome
    actor_id: UUID | None = None
    actor: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    client_ip: str | None = None
    request_id: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class AuditEntry(NewAuditEntry):
    id: int
    ts: datetime
