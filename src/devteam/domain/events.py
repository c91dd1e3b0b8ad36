"""Events: the append-only history of a root task, numbered 1..N without gaps."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

MAX_SEQ = 2**31 - 1
"""The largest event `seq` (a 32-bit column); an `after` beyond it is refused."""


class EventType(StrEnum):
    TASK_CREATED = "task.created"
    TASK_PLANNED = "task.planned"
    TASK_AWAITING_APPROVAL = "task.awaiting_approval"
    TASK_APPROVED = "task.approved"
    RULE_DECISION = "rule.decision"
    TASK_DELEGATED = "task.delegated"
    TASK_STARTED = "task.started"
    TASK_PROGRESS = "task.progress"
    TOOL_CALL = "tool.call"
    TASK_RETRYING = "task.retrying"
    CHECK_COMPLETED = "check.completed"
    REVIEW_COMPLETED = "review.completed"
    TASK_COMPLETED = "task.completed"
    TASK_FAILED = "task.failed"
    TASK_CANCELLED = "task.cancelled"


TERMINAL_EVENTS = frozenset(
    {EventType.TASK_COMPLETED, EventType.TASK_FAILED, EventType.TASK_CANCELLED}
)
"""The events of a task reaching a terminal status: a root's last status event."""


class NewEvent(BaseModel):
    """An event about to be appended; storage assigns `id`, `seq` and `ts`."""

    model_config = ConfigDict(frozen=True)

    type: EventType
    subtask_id: UUID | None = None
    """The subtask the event is about, or None when it is about the root task."""
    data: dict[str, Any] = Field(default_factory=dict)


class Event(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True)

    id: UUID
    """The event's id."""
    task_id: UUID
    """The root task."""
    subtask_id: UUID | None
    """The subtask the event is about; null when it is about the root task."""
    seq: int
    """Position in the root task's history: 1, 2, 3, ... with no gaps."""
    type: EventType
    """What happened: `task.created`, `task.started`, `tool.call`, ..."""
    data: dict[str, Any]
    """Details of the event; their keys depend on `type`."""
    ts: datetime
    """When it was recorded."""
    trace_id: str | None = None
    """The OpenTelemetry trace of the task (32 hex digits), when tracing is on."""
