"""`config/agents.yaml`: the agents' models, prices, limits, retries and git worktrees.

The model every agent uses comes from `DEVTEAM_LLM_MODEL`; `models` here
overrides it for one agent type, or for the TeamLeader's planner
(`team_leader`). Prices turn token counts into cost; the rate limit and the
retries wrap every request to a provider.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from limits import parse_many
from pydantic import Field, field_validator, model_validator

from devteam.domain.enums import AgentType
from devteam.settings._base import ConfigModel

PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]

PLANNER = "team_leader"
"""The key of the TeamLeader's planner in `models`."""
ModelRole = Literal[
    "research", "codebase_analyzer", "frontend", "backend", "reviewer", "team_leader"
]

MODEL_STRING = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)?:\S+$")


class Price(ConfigModel):
    """USD per million tokens."""

    input: NonNegativeFloat
    output: NonNegativeFloat
    cached_input: NonNegativeFloat | None = None
    """Input tokens read from the provider's prompt cache (default: the input price)."""


class LlmRetryConfig(ConfigModel):
    """Retries of a request the provider answered 429 or 5xx, or that never reached it."""

    max_attempts: PositiveInt = 4
    """Attempts in all, the first included (1: no retry)."""
    initial_backoff_s: PositiveFloat = 1.0
    multiplier: Annotated[float, Field(ge=1)] = 2.0
    max_backoff_s: PositiveFloat = 30.0
    jitter_s: NonNegativeFloat = 0.5
    max_retry_after_s: NonNegativeFloat = 60.0
    """A provider asking to wait longer than this (Retry-After) is not retried."""

    @model_validator(mode="after")
    def _backoff_order(self) -> LlmRetryConfig:
        if self.max_backoff_s < self.initial_backoff_s:
            raise ValueError("max_backoff_s must be at least initial_backoff_s")
        return self


class AgentLimits(ConfigModel):
    """What one attempt of an agent may do before it counts as stuck."""

    max_requests: Annotated[int, Field(ge=1, le=1000)] = 30
    """Model requests (turns of the agent loop)."""
    max_tool_calls: Annotated[int, Field(ge=0, le=10_000)] = 80


class ContextConfig(ConfigModel):
    max_dependency_chars: Annotated[int, Field(ge=1000)] = 24_000
    """Each dependency's result is cut to this many characters in an agent's prompt."""


class AnalysisConfig(ConfigModel):
    """The structural scan of the codebase analyzer (it runs with or without an LLM)."""

    max_files_read: Annotated[int, Field(ge=0)] = 400
    """Files read to count lines; beyond this, files are counted but not measured."""
    max_relevant_files: Annotated[int, Field(ge=1)] = 15
    large_file_lines: PositiveInt = 1000
    """Source files longer than this are listed as a risk."""


class GitConfig(ConfigModel):
    worktrees_dir: Annotated[str, Field(min_length=1)] = ".worktrees"
    """Where coders' worktrees go, relative to DEVTEAM_WORKSPACES_ROOT (or absolute)."""
    branch_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*/$")] = (
        "devteam/"
    )
    """A coder's branch is this followed by its task id."""
    author_name: Annotated[str, Field(min_length=1)] = "DevTeam"
    author_email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")] = "devteam@localhost"
    ssh_command: str | None = None
    """The ssh command git reaches remotes with (e.g. `ssh -i /keys/deploy`); None: `ssh`.
    A repository's own `core.sshCommand` never runs."""


class AgentsConfig(ConfigModel):
    models: dict[ModelRole, str] = Field(default_factory=dict)
    """Agent type (or `team_leader`) -> model string, overriding DEVTEAM_LLM_MODEL."""
    prices: dict[str, Price] = Field(default_factory=dict)
    """Model string (or bare model name) -> price. Models not listed are priced from
    pydantic-ai's bundled price list when it knows them, else counted at no cost."""
    rate_limit: str | None = None
    """Requests to one provider from every process together (shared through the broker),
    e.g. "50/minute"; a request over it waits for room. None: no limit."""
    retry: LlmRetryConfig = LlmRetryConfig()
    request_timeout_s: PositiveFloat = 180.0
    """One HTTP request to a provider."""
    limits: dict[AgentType, AgentLimits] = Field(default_factory=dict)
    """Per agent type; types not listed get the defaults of AgentLimits."""
    context: ContextConfig = ContextConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    git: GitConfig = GitConfig()

    @field_validator("models")
    @classmethod
    def _model_strings(cls, value: dict[str, str]) -> dict[str, str]:
        for role, model in value.items():
            if not MODEL_STRING.match(model):
                raise ValueError(f"{role}: use <provider>:<model>, e.g. anthropic:claude-haiku-4-5")
        return value

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_many(value)
            except ValueError:
                raise ValueError("not a rate limit: use e.g. 50/minute or 5/second") from None
        return value

    def limits_for(self, agent_type: AgentType) -> AgentLimits:
        return self.limits.get(agent_type) or AgentLimits()
