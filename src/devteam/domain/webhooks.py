"""Webhooks: a task's `webhook` (where to POST it when it ends) and its deliveries."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from devteam.domain.enums import TaskStatus

URL_MAX_LENGTH = 2048


class WebhookEvent(StrEnum):
    """How a task ended; each one may call the webhook."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


WEBHOOK_EVENTS: dict[TaskStatus, WebhookEvent] = {
    TaskStatus.COMPLETED: WebhookEvent.COMPLETED,
    TaskStatus.FAILED: WebhookEvent.FAILED,
    TaskStatus.CANCELLED: WebhookEvent.CANCELLED,
}


class Webhook(BaseModel):
    """Where to POST the task when it ends (the `webhook` of a TaskRequest)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        json_schema_extra={
            "examples": [{"url": "https://ci.example.com/devteam-hook", "events": ["completed"]}]
        },
    )

    url: Annotated[str, Field(min_length=8, max_length=URL_MAX_LENGTH)]
    """An `http` or `https` URL. Its host must not resolve to a private, loopback or
    link-local address unless the server lists it in `DEVTEAM_WEBHOOK_ALLOWED_HOSTS`."""
    events: Annotated[list[WebhookEvent], Field(min_length=1, max_length=3)] = Field(
        default_factory=lambda: list(WebhookEvent)
    )
    """Which endings call the webhook; default: all three."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https"):
            raise ValueError("the URL must start with http:// or https://")
        if not parts.hostname:
            raise ValueError("the URL has no host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("the URL must not carry a user name or password")
        try:
            parts.port  # noqa: B018 - raises on a port out of range
        except ValueError:
            raise ValueError("the URL's port is not a number from 0 to 65535") from None
        if any(c.isspace() or ord(c) < 32 for c in value):
            raise ValueError("the URL must not contain spaces or control characters")
        return value

    @field_validator("events")
    @classmethod
    def _no_repeats(cls, value: list[WebhookEvent]) -> list[WebhookEvent]:
        if len(set(value)) != len(value):
            raise ValueError("events must not repeat")
        return value


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    """Not delivered yet: waiting for its next attempt."""
    DELIVERED = "delivered"
    """The receiver answered 2xx."""
    FAILED = "failed"
    """Every attempt failed until the retry period ended; no more attempts."""


class DeliveryAttempt(BaseModel):
    """One POST to the receiver."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    at: datetime
    """When the attempt started."""
    status_code: int | None
    """The receiver's HTTP status; null when there was no answer (timeout, refused)."""
    error: str | None
    """Why the attempt failed, when it did."""
    duration_ms: float
    """How long the attempt took."""


class WebhookDelivery(BaseModel):
    """The call of one task's webhook for one ending, with every attempt at it."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    id: UUID
    """Also the `webhook-id` header of every attempt, so a receiver can drop repeats."""
    task_id: UUID
    """The root task."""
    event: WebhookEvent
    """How the task ended."""
    url: str
    """Where it is POSTed."""
    status: DeliveryStatus
    """`pending` until a 2xx answer (`delivered`) or the end of the retry period (`failed`)."""
    attempts: int
    """Attempts made so far."""
    next_attempt_at: datetime | None
    """When the next attempt is due; null once delivered or failed."""
    last_status_code: int | None
    """The HTTP status of the latest attempt; null when it got none."""
    last_error: str | None
    """Why the latest attempt failed, when it did."""
    created_at: datetime
    """When the task ended (the delivery was written in the same transaction)."""
    delivered_at: datetime | None
    """When the receiver answered 2xx."""
    history: list[DeliveryAttempt]
    """The latest attempts, oldest first."""
