"""`config/team_leader.yaml`: the rules the TeamLeader applies."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from devteam.domain.enums import PHASE_ORDER, AgentType, Phase
from devteam.settings._base import ConfigModel

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


class ComplexityConfig(ConfigModel):
    budget_per_root: PositiveInt = 25
    """Sum of subtask complexities allowed under one root task."""
    max_per_task: Annotated[int, Field(ge=1, le=10)] = 5
    """A task above this complexity must be decomposed into subtasks."""


class RoutingConfig(ConfigModel):
    table: dict[str, AgentType] = Field(
        default_factory=lambda: {
            "research": AgentType.RESEARCH,
            "analysis": AgentType.CODEBASE_ANALYZER,
            "frontend": AgentType.FRONTEND,
            "ui": AgentType.FRONTEND,
            "backend": AgentType.BACKEND,
            "feature": AgentType.BACKEND,
            "bugfix": AgentType.BACKEND,
        }
    )
    """task_type -> agent type."""
    fallback: AgentType = AgentType.BACKEND
    """Agent for a task type the table does not name."""


class ConcurrencyConfig(ConfigModel):
    global_limit: Annotated[PositiveInt, Field(alias="global")] = 10
    per_user: PositiveInt = 10
    per_agent_type: dict[AgentType, PositiveInt] = Field(default_factory=dict)
    """Agent types not listed are limited by the global and per-user limits only."""


class ApprovalConfig(ConfigModel):
    complexity_threshold: Annotated[int, Field(ge=1)] | None = None
    """Root tasks whose total complexity exceeds this wait for approval (None: off)."""


class RetryConfig(ConfigModel):
    initial_interval_s: PositiveFloat = 1.0
    backoff_coefficient: Annotated[float, Field(ge=1.0)] = 2.0
    maximum_interval_s: PositiveFloat = 100.0
    maximum_attempts: PositiveInt = 3
    non_retryable_error_codes: list[str] = Field(
        default_factory=lambda: [
            "validation_error",
            "budget_exceeded",
            "llm_not_configured",
            "agent_unavailable",
            "cancelled",
            "workspace_tampered",
            "checks_failed",
        ]
    )

    @model_validator(mode="after")
    def _interval_order(self) -> RetryConfig:
        if self.maximum_interval_s < self.initial_interval_s:
            raise ValueError("maximum_interval_s must be at least initial_interval_s")
        return self


class TimeoutsConfig(ConfigModel):
    queue_wait_s: PositiveFloat = 3600.0
    attempt_s: PositiveFloat = 300.0
    phase_s: PositiveFloat = 3600.0
    task_s: PositiveFloat = 4 * 3600.0


class BudgetsConfig(ConfigModel):
    max_tokens: PositiveInt | None = None
    """Default token budget of a root task when the request gives none (None: unlimited)."""
    max_cost_usd: PositiveFloat | None = None


class LeasesConfig(ConfigModel):
    duration_s: PositiveFloat = 30.0
    """A worker that stops heartbeating loses its work after this long."""
    heartbeat_s: PositiveFloat = 10.0
    recovery_interval_s: PositiveFloat = 15.0

    @model_validator(mode="after")
    def _heartbeat_shorter(self) -> LeasesConfig:
        if self.heartbeat_s >= self.duration_s:
            raise ValueError("heartbeat_s must be shorter than duration_s")
        return self


class StuckConfig(ConfigModel):
    max_repeated_tool_calls: Annotated[int, Field(ge=2)] = 3
    """The same tool call with the same arguments this many times stops the attempt."""


class TemplateStep(ConfigModel):
    key: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    agent_type: AgentType
    phase: Phase
    task: Annotated[str, Field(min_length=1)]
    """Instruction for the step; `{task}` is replaced by the root task's text."""
    complexity_share: Annotated[float, Field(gt=0, le=1)] = 0.25
    depends_on: list[str] = Field(default_factory=list)


class PlannerConfig(ConfigModel):
    max_replans: Annotated[int, Field(ge=0, le=10)] = 2
    templates: dict[str, list[TemplateStep]] = Field(default_factory=dict)
    """task_type -> plan; the `default` template serves task types not listed."""


class ReviewConfig(ConfigModel):
    max_rounds: Annotated[int, Field(ge=0, le=10)] = 2
    """Times a review that requests changes sends the work back to the coder; the review
    after the last of them is final."""
    task_types: list[str] = Field(default_factory=lambda: ["feature", "bugfix"])
    """Plans of these task types (template or LLM) that change code get a review after the
    implementation, and a delivery step after the review when the task names a project."""


class TeamLeaderConfig(ConfigModel):
    complexity: ComplexityConfig = ComplexityConfig()
    routing: RoutingConfig = RoutingConfig()
    phases: list[Phase] = Field(default_factory=lambda: list(PHASE_ORDER))
    concurrency: ConcurrencyConfig = ConcurrencyConfig()
    approval: ApprovalConfig = ApprovalConfig()
    retry: RetryConfig = RetryConfig()
    timeouts: TimeoutsConfig = TimeoutsConfig()
    budgets: BudgetsConfig = BudgetsConfig()
    leases: LeasesConfig = LeasesConfig()
    stuck: StuckConfig = StuckConfig()
    planner: PlannerConfig = PlannerConfig()
    review: ReviewConfig = ReviewConfig()
