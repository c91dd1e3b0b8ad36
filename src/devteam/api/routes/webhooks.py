"""A task's webhook: checked at submission, its deliveries listed, its body rendered.

`GET /api/v1/tasks/{id}/webhooks` follows the rules of reading the task: a task
the caller may not read is `404`.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from devteam.api.access import readable_task
from devteam.api.deps import StoreDep
from devteam.api.docs import error_responses
from devteam.api.routes.tasks import TaskOut
from devteam.api.security import CurrentUser
from devteam.domain.errors import ErrorCode
from devteam.domain.tasks import Task
from devteam.domain.webhooks import Webhook, WebhookDelivery

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])

_TASK_ID = "6f1c0b5e-3c9e-4a8e-9d7a-2f4b1e6c8a10"
_EXAMPLE: dict[str, Any] = {
    "webhook": {"url": "https://ci.example.com/devteam-hook", "events": ["completed", "failed"]},
    "items": [
        {
            "id": "5c0a9e1f-2b3d-4e5f-8a7b-6c5d4e3f2a10",
            "task_id": _TASK_ID,
            "event": "completed",
            "url": "https://ci.example.com/devteam-hook",
            "status": "pending",
            "attempts": 1,
            "next_attempt_at": "2025-01-31T09:31:10Z",
            "last_status_code": 503,
            "last_error": "the receiver answered 503",
            "created_at": "2025-01-31T09:31:04Z",
            "delivered_at": None,
            "history": [
                {
                    "at": "2025-01-31T09:31:05Z",
                    "status_code": 503,
                    "error": "the receiver answered 503",
                    "duration_ms": 41.7,
                }
            ],
        }
    ],
}


class WebhookDeliveries(BaseModel):
    model_config = ConfigDict(
        use_attribute_docstrings=True,
        json_schema_extra={"examples": [_EXAMPLE]},
    )

    webhook: Webhook | None
    """The task's webhook as submitted; null when it has none (or for a subtask)."""
    items: list[WebhookDelivery]
    """The deliveries, oldest first: one when the task ended with an event it asked for."""


def render_task(task: Task, subtasks: list[Task]) -> str:
    """A delivery's body: the task as `GET /api/v1/tasks/{id}` shows it."""
    return TaskOut.of(task, subtasks).model_dump_json()


@router.get(
    "/{task_id}/webhooks",
    summary="List a task's webhook deliveries",
    description=(
        "The task's webhook and each delivery of it: status (`pending`, `delivered`, "
        "`failed`), attempts so far with their HTTP status codes or errors, and when the "
        "next attempt is due."
    ),
    response_model=WebhookDeliveries,
    responses=error_responses(
        ErrorCode.UNAUTHORIZED,
        ErrorCode.TOKEN_EXPIRED,
        ErrorCode.RATE_LIMITED,
        (ErrorCode.NOT_FOUND, f"task {_TASK_ID} not found"),
        ErrorCode.VALIDATION_ERROR,
    ),
)
async def list_webhook_deliveries(
    task_id: UUID, caller: CurrentUser, store: StoreDep
) -> WebhookDeliveries:
    async with store.read() as tx:
        task, _ = await readable_task(tx, caller, task_id)
        deliveries = await tx.webhooks.for_task(task.id)
    return WebhookDeliveries(webhook=task.webhook, items=deliveries)
