"""The interface between the TeamLeader and the agents.

The TeamLeader reaches every agent through `Agent.execute(spec, context)`, so it
can be tested with agents defined in the tests, and the real agents plug in
without it knowing their internals.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol
from uuid import UUID

from devteam.domain.enums import AgentType
from devteam.domain.errors import DevTeamError, ErrorCode
from devteam.domain.events import EventType
from devteam.domain.tasks import TaskResult, TaskSpec, Usage


class DependencyResult(Protocol):
    key: str | None
    agent_type: AgentType | None
    result: TaskResult


class AgentContext(Protocol):
    """What a running agent can see and report."""

    @property
    def dependencies(self) -> Mapping[str, TaskResult]:
        """Results of the tasks this one depends on (by key), and of earlier phases."""
        ...

    async def progress(self, message: str, **data: Any) -> None:
        """Tell followers what is happening (a `task.progress` event)."""
        ...

    async def tool_call(self, server: str, tool: str, outcome: str, **data: Any) -> None:
        """Record a tool call (a `tool.call` event)."""
        ...

    def add_usage(self, usage: Usage) -> None:
        """Count usage as it happens, so a budget can stop the attempt early."""
        ...

    async def record(self, type: EventType, **data: Any) -> None:
        """Record another event of the attempt (e.g. `check.completed`)."""
        ...


class Agent(Protocol):
    agent_type: AgentType
    description: str

    async def execute(self, spec: TaskSpec, context: AgentContext) -> TaskResult: ...


class AgentFailed(DevTeamError):
    """An attempt failed; `code` decides whether the retry policy tries again."""

    status_code = 500

    def __init__(
        self,
        code: ErrorCode | str,
        message: str,
        *,
        usage: Usage | None = None,
        task_id: UUID | None = None,
        budget: Literal["tokens", "cost"] | None = None,
    ) -> None:
        super().__init__(message)
        self.error_code = str(code)
        self.usage = usage or Usage()
        self.task_id = task_id
        self.budget = budget
        """Which budget of the task stopped the attempt (`budget_exceeded`), if one did."""
