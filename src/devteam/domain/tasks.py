"""Tasks: what a user submits (TaskRequest) and what the service keeps (Task)."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

from devteam.domain.enums import AgentType, Phase, TaskStatus
from devteam.domain.webhooks import Webhook

METADATA_MAX_BYTES = 16 * 1024
MAX_TOKENS = 2**63 - 1
"""Token counts are 64-bit columns."""
MAX_SUBTASKS = 50

TaskText = Annotated[str, Field(min_length=10, max_length=10_000)]
Complexity = Annotated[StrictInt, Field(ge=1, le=10)]
Priority = Annotated[StrictInt, Field(ge=1, le=10)]
TaskType = Annotated[str, Field(min_length=1, max_length=100)]
Key = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
ProjectId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]

DEFAULT_PHASE: dict[AgentType, Phase] = {
    AgentType.RESEARCH: Phase.RESEARCH,
    AgentType.CODEBASE_ANALYZER: Phase.ANALYSIS,
    AgentType.FRONTEND: Phase.IMPLEMENTATION,
    AgentType.BACKEND: Phase.IMPLEMENTATION,
    AgentType.REVIEWER: Phase.REVIEW,
    AgentType.DELIVERY: Phase.DELIVERY,
}


REVIEW_ROUND_KEY = "__review_round"
"""Metadata of a review subtask: which round of review it is (1 when absent)."""
REVISION_KEY = "__revision"
"""Metadata of a coder subtask that continues an earlier change after a review asked for
changes: `{"of": key, "revision": n, "branch": ..., "base_commit": ..., "review": key}`."""


def _strip_text(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _reserved_keys(value: Any, path: str = "") -> list[str]:
    if isinstance(value, dict):
        found = [f"{path}{k}" for k in value if isinstance(k, str) and k.startswith("__")]
        for k, v in value.items():
            found += _reserved_keys(v, f"{path}{k}.")
        return found
    if isinstance(value, list):
        return [hit for i, v in enumerate(value) for hit in _reserved_keys(v, f"{path}{i}.")]
    return []


class Budget(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid", frozen=True)

    max_tokens: Annotated[StrictInt, Field(gt=0, le=MAX_TOKENS)] | None = None
    """Input plus output tokens over every LLM request of the task and its subtasks."""
    max_cost_usd: Annotated[float, Field(gt=0, le=100_000)] | None = None
    """LLM cost in US dollars over the task and its subtasks."""
    timeout_s: Annotated[float, Field(gt=0, le=7 * 24 * 3600)] | None = None
    """Wall time of the whole task, from submission to its end."""


class SubtaskRequest(BaseModel):
    """One step of an explicit plan."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid", frozen=True)

    key: Key
    """Names the step in the plan (`depends_on` refers to it)."""
    agent_type: AgentType
    """The agent that does the step."""
    task: TaskText
    """What the step does, in words (10 to 10000 characters)."""
    complexity: Complexity
    """1 to 10."""
    task_type: TaskType | None = None
    """The kind of work; defaults to the parent's."""
    priority: Priority | None = None
    """Defaults to the parent's priority."""
    phase: Phase | None = None
    """Defaults from the agent type: research, analysis, or implementation."""
    depends_on: Annotated[list[Key], Field(max_length=MAX_SUBTASKS)] = Field(default_factory=list)
    """Keys of the steps that must complete before this one starts."""

    _strip = field_validator("task", mode="before")(_strip_text)

    @property
    def effective_phase(self) -> Phase:
        return self.phase or DEFAULT_PHASE[self.agent_type]


SubtaskList = Annotated[list[SubtaskRequest], Field(min_length=1, max_length=MAX_SUBTASKS)]


class TaskRequest(BaseModel):
    """The body of `POST /api/v1/tasks`, validated exactly as docs/api.md lists."""

    model_config = ConfigDict(
        use_attribute_docstrings=True,
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "task": "Add a /healthz endpoint to the orders service with a test",
                    "complexity": 3,
                    "task_type": "feature",
                    "project_id": "orders-service",
                }
            ]
        },
    )

    task: TaskText
    """What to do, in words (10 to 10000 characters)."""
    complexity: Complexity
    """1 to 10: how big the work is; large tasks are split into subtasks."""
    task_type: TaskType = "feature"
    """The kind of work (`feature`, `bugfix`, `research`, ...), used for routing."""
    agent_type: AgentType | None = None
    """Omitted: the TeamLeader decides."""
    priority: Priority = 5
    """1 to 10; higher runs first."""
    project_id: ProjectId | None = None
    """The project (a git repository the service knows) to work on."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Free-form, at most 16 KiB as JSON; keys starting `__` are refused."""
    subtasks: SubtaskList | None = None
    """An explicit plan, used as given instead of the TeamLeader's."""
    budget: Budget | None = None
    """Limits of tokens, cost and wall time for the whole task."""
    require_approval: StrictBool = False
    """Stop at the plan until it is approved."""
    webhook: Webhook | None = None
    """Called with the task when it completes, fails or is cancelled."""

    _strip = field_validator("task", mode="before")(_strip_text)

    @field_validator("metadata")
    @classmethod
    def _metadata_rules(cls, value: dict[str, Any]) -> dict[str, Any]:
        if reserved := _reserved_keys(value):
            raise ValueError(f"keys starting with '__' are reserved: {', '.join(reserved[:5])}")
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        if size > METADATA_MAX_BYTES:
            raise ValueError(f"metadata is {size} bytes as JSON; the limit is {METADATA_MAX_BYTES}")
        return value

    @model_validator(mode="after")
    def _plan_is_a_dag(self) -> TaskRequest:
        if self.subtasks is not None:
            check_plan_graph([(s.key, s.depends_on) for s in self.subtasks])
        return self


def check_plan_graph(steps: list[tuple[str, list[str]]]) -> None:
    """Refuse duplicate keys, unknown or self dependencies, and cycles (ValueError)."""
    seen: set[str] = set()
    for key, _ in steps:
        if key in seen:
            raise ValueError(f"subtask key {key!r} is used twice")
        seen.add(key)
    graph = dict(steps)
    for key, deps in steps:
        for dep in deps:
            if dep not in graph:
                raise ValueError(f"subtask {key!r} depends on unknown key {dep!r}")
            if dep == key:
                raise ValueError(f"subtask {key!r} depends on itself")
    if cycle := find_cycle(graph):
        raise ValueError(f"dependency cycle: {' -> '.join(cycle)}")


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A dependency cycle of `graph` as a path that returns to its start, or None."""
    # Depth-first search with colours: meeting a grey node (on the path) closes a cycle.
    colour: dict[str, int] = dict.fromkeys(graph, 0)
    for start in graph:
        if colour[start]:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = []
        while stack:
            node, index = stack.pop()
            if index == 0:
                colour[node] = 1
                path.append(node)
            deps = graph[node]
            if index < len(deps):
                stack.append((node, index + 1))
                dep = deps[index]
                if colour[dep] == 1:
                    return [*path[path.index(dep) :], dep]
                if colour[dep] == 0:
                    stack.append((dep, 0))
            else:
                colour[node] = 2
                path.pop()
    return None


class Usage(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True)

    requests: int = 0
    """LLM requests made."""
    input_tokens: int = 0
    """Tokens sent to the LLM."""
    output_tokens: int = 0
    """Tokens the LLM produced."""
    tool_calls: int = 0
    """MCP tool calls made."""
    cost_usd: float = 0.0
    """Estimated LLM cost in US dollars."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        # Sums of valid usages are valid: built without validation (this is on every
        # transition that records an attempt's usage).
        return Usage.model_construct(
            requests=self.requests + other.requests,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            tool_calls=self.tool_calls + other.tool_calls,
            cost_usd=round(self.cost_usd + other.cost_usd, 8),
        )


class TaskError(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True)

    code: str
    """Stable snake_case code, e.g. `llm_not_configured`, `timeout`, `cancelled`."""
    message: str
    """For people."""


class TaskSummary(BaseModel):
    """A subtask as listed inside its parent."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True)

    id: UUID
    """The subtask's id."""
    key: str | None
    """The subtask's name in its plan (unique among its siblings)."""
    task: str
    """What the subtask is asked to do."""
    status: TaskStatus
    """Where the subtask is in its lifecycle."""
    agent_type: AgentType | None
    """The agent that works on it."""
    phase: Phase | None
    """Research, analysis, implementation or review."""
    complexity: int
    """1 to 10."""
    attempt: int
    """1 for the first attempt; retries count up."""
    depends_on: list[UUID]
    """Sibling subtasks this one waits for."""
    error: TaskError | None
    """Why it failed or was cancelled; null otherwise."""
    usage: Usage
    """LLM requests, tokens, tool calls and cost of the subtask."""
    started_at: datetime | None
    """When work on it first started."""
    finished_at: datetime | None
    """When it completed, failed or was cancelled."""


class Task(BaseModel):
    """A task as stored: a root task or one of its subtasks."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    parent_id: UUID | None
    root_id: UUID
    key: str | None
    status: TaskStatus
    agent_type: AgentType | None
    task_type: str
    task: str
    complexity: int
    priority: int
    project_id: str | None
    metadata: dict[str, Any]
    phase: Phase | None
    depends_on: list[UUID]
    require_approval: bool
    budget: Budget | None
    plan: list[SubtaskRequest] | None = None
    """An explicit plan given at submission, kept until the task is planned."""
    webhook: Webhook | None = None
    """Of a root task: where to POST it when it ends."""
    attempt: int
    version: int
    created_by: UUID
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None
    error: TaskError | None
    usage: Usage
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    not_before: datetime | None = None
    queued_at: datetime | None = None
    deadline_at: datetime | None = None
    trace_parent: str | None = None
    """W3C `traceparent` of the submission (OpenTelemetry), when tracing is on: the
    task's events carry its trace id, and its work continues its trace."""

    @property
    def is_root(self) -> bool:
        return self.parent_id is None

    def summary(self) -> TaskSummary:
        return TaskSummary(
            id=self.id,
            key=self.key,
            task=self.task,
            status=self.status,
            agent_type=self.agent_type,
            phase=self.phase,
            complexity=self.complexity,
            attempt=self.attempt,
            depends_on=self.depends_on,
            error=self.error,
            usage=self.usage,
            started_at=self.started_at,
            finished_at=self.finished_at,
        )


class TaskSpec(BaseModel):
    """What an agent is asked to do: one attempt of one task."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    root_id: UUID
    parent_id: UUID | None
    key: str | None
    agent_type: AgentType
    task_type: str
    task: str
    """The instruction for this task."""
    root_task: str
    """What the user asked for as a whole (the root task's text)."""
    complexity: int
    priority: int
    project_id: str | None
    metadata: dict[str, Any]
    phase: Phase | None
    attempt: int
    created_by: UUID
    deadline: datetime | None
    """The attempt must end by then (attempt, phase and task timeouts together)."""
    max_tokens: int | None
    """Tokens this attempt may still use under the root task's budget (None: unlimited)."""
    max_cost_usd: float | None


class TaskResult(BaseModel):
    """What an agent hands back: its typed output, as JSON, and what it cost."""

    model_config = ConfigDict(frozen=True)

    output: dict[str, Any]
    """The agent's output model (ResearchReport, CodebaseReport, CodeChange, ...) as JSON."""
    summary: str = ""
    usage: Usage = Usage()
    output_type: str | None = None
    """Name of the output model."""
    prompt_version: str | None = None
    """Content hash of the system prompt used."""
    model: str | None = None


def phase_ranks(phases: Sequence[str]) -> dict[str, int]:
    """Each phase's place in `phases` (the configured order), for `phase_rank`."""
    return _phase_ranks(tuple(str(p) for p in phases))


@functools.lru_cache(maxsize=16)
def _phase_ranks(phases: tuple[str, ...]) -> dict[str, int]:
    return {phase: rank for rank, phase in enumerate(phases)}


def phase_rank(task: Task, ranks: Mapping[str, int]) -> int:
    """Where the task's phase comes in the order `ranks` gives (see `phase_ranks`); a task
    of no listed phase comes last."""
    return ranks.get(task.phase, len(ranks)) if task.phase is not None else len(ranks)
