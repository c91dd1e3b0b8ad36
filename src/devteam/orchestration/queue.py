"""The work queue's vocabulary: which queue holds what, and the work item format.

Work goes on ten queues, one per priority (10 first), so an executor always
takes the most urgent ready work; root tasks to plan go on their own queue, so
planning is never starved by agent work. A work item names a task and its
attempt; an item for an older attempt, or for a task that moved on, is stale
and dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from devteam.domain.enums import TaskStatus
from devteam.domain.tasks import Task
from devteam.observability import tracing


def queue_for(priority: int) -> str:
    return f"tasks.p{priority:02d}"


PRIORITY_QUEUES = [queue_for(p) for p in range(10, 0, -1)]
"""The queues of agent work, most urgent first."""

PLAN_QUEUE = "plans"
"""Root tasks to plan: TeamLeader work, taken apart from agent work so it is never starved."""


@dataclass(frozen=True, slots=True)
class WorkItem:
    kind: Literal["plan", "run"]
    task_id: UUID
    root_id: UUID
    attempt: int
    priority: int
    traceparent: str | None = None
    """W3C trace context of whoever queued the work, so the trace crosses the queue."""

    @classmethod
    def for_task(cls, task: Task) -> WorkItem:
        kind: Literal["plan", "run"] = (
            "plan" if task.parent_id is None and task.status == TaskStatus.PENDING else "run"
        )
        traceparent = tracing.current_traceparent() or task.trace_parent
        return cls(kind, task.id, task.root_id, task.attempt, task.priority, traceparent)

    @property
    def queue(self) -> str:
        return PLAN_QUEUE if self.kind == "plan" else queue_for(self.priority)

    def encode(self) -> bytes:
        data: dict[str, Any] = {
            "k": self.kind,
            "t": str(self.task_id),
            "r": str(self.root_id),
            "a": self.attempt,
            "p": self.priority,
        }
        if self.traceparent:
            data["tp"] = self.traceparent
        return json.dumps(data).encode()

    @classmethod
    def decode(cls, raw: bytes) -> WorkItem:
        data = json.loads(raw)
        return cls(
            data["k"],
            UUID(data["t"]),
            UUID(data["r"]),
            int(data["a"]),
            int(data["p"]),
            data.get("tp"),
        )
