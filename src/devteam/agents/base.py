"""The base of every agent: one class per agent type, generic over its output model.

`BaseAgent.execute(spec, context)` is what the TeamLeader calls. It checks that
the agent can work at all (an LLM when it needs one, budget left), runs the
agent's `work()` and turns the outcome into a `TaskResult`: the typed output as
JSON, its summary, the usage of the attempt, the output type, the model and the
version of the system prompt. Failures are `AgentFailed` with the code that
decides whether the TeamLeader retries, and carry the usage spent so far.

`ask()` is one pydantic-ai run: the system prompt read from disk now, the
model of this agent type wrapped for this attempt (retries, rate limit,
metering), the granted MCP tools through an observer (stuck detection,
`tool.call` events), and usage limits from the attempt's budget and the agent's
limits in agents.yaml.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel

from devteam.agents.llm import LanguageModels
from devteam.agents.metering import UsageMeter
from devteam.agents.observer import AttemptObserver, StuckDetected
from devteam.agents.prompts import Prompt, PromptStore
from devteam.agents.workspaces import Workspaces
from devteam.domain.agents import AgentContext, AgentFailed
from devteam.domain.enums import AgentType
from devteam.domain.errors import ErrorCode
from devteam.domain.tasks import TaskResult, TaskSpec, Usage
from devteam.mcp.manager import McpManager
from devteam.settings.agents import AgentsConfig
from devteam.settings.team_leader import TeamLeaderConfig
from devteam.settings.verification import VerificationConfig

if TYPE_CHECKING:
    from pydantic_ai import UsageLimits
    from pydantic_ai.exceptions import UsageLimitExceeded
    from pydantic_ai.messages import ModelMessage
    from pydantic_ai.toolsets import AbstractToolset

# pydantic-ai (the LLM stack) is imported by `ask()`, when an agent uses the LLM: a
# service with no LLM configured starts without it.

OutputT = TypeVar("OutputT", bound=BaseModel)
AnswerT = TypeVar("AnswerT", bound=BaseModel)

OUTPUT_RETRIES = 3
"""Times a malformed or invalid answer (or a refused tool call) is sent back to the model."""
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class AgentKit:
    """What every agent works with, shared by all of one process."""

    llm: LanguageModels
    prompts: PromptStore
    mcp: McpManager
    workspaces: Workspaces
    config: AgentsConfig
    rules: Callable[[], TeamLeaderConfig]
    """The TeamLeader's rules in force (they can be reloaded while running)."""
    verification: VerificationConfig = field(default_factory=VerificationConfig)
    """The sandbox, the coders' fix loop, delivery."""


class Attempt:
    """One attempt of one agent at one task: its meter, its observer, what it used."""

    def __init__(self, spec: TaskSpec, context: AgentContext, kit: AgentKit) -> None:
        self.spec = spec
        self.context = context
        self.meter = UsageMeter(context.add_usage)
        self.observer = AttemptObserver(
            context, self.meter, kit.rules().stuck.max_repeated_tool_calls
        )
        self.prompt: Prompt | None = None
        self.model: str | None = None


class BaseAgent(ABC, Generic[OutputT]):
    agent_type: AgentType
    description: str
    prompt_name: ClassVar[str]
    """The system prompt: `<prompts_dir>/<prompt_name>.md`."""
    output_model: type[OutputT]
    needs_llm: ClassVar[bool] = True
    """Without an LLM the agent fails at once with `llm_not_configured`."""

    def __init__(self, kit: AgentKit) -> None:
        self.kit = kit

    @abstractmethod
    async def work(self, attempt: Attempt) -> OutputT:
        """Do the task; raise `AgentFailed` when it cannot be done."""

    def summary_of(self, output: OutputT) -> str:
        summary = getattr(output, "summary", "")
        return summary if isinstance(summary, str) else ""

    async def execute(self, spec: TaskSpec, context: AgentContext) -> TaskResult:
        attempt = Attempt(spec, context, self.kit)
        try:
            self._check_can_start(spec)
            output = await self.work(attempt)
        except AgentFailed as exc:
            if exc.usage == Usage():
                exc.usage = attempt.meter.total
            raise
        return TaskResult(
            output=output.model_dump(mode="json"),
            summary=self.summary_of(output),
            usage=attempt.meter.total,
            output_type=type(output).__name__,
            prompt_version=attempt.prompt.version if attempt.prompt else None,
            model=attempt.model,
        )

    def _check_can_start(self, spec: TaskSpec) -> None:
        if self.needs_llm and not self.kit.llm.configured(self.agent_type):
            raise AgentFailed(
                ErrorCode.LLM_NOT_CONFIGURED,
                f"the {self.agent_type} agent needs an LLM and none is configured "
                "(set DEVTEAM_LLM_MODEL)",
            )
        if spec.max_tokens is not None and spec.max_tokens <= 0:
            raise AgentFailed(
                ErrorCode.BUDGET_EXCEEDED,
                "token budget exhausted: no tokens left for this task",
                budget="tokens",
            )
        if spec.max_cost_usd is not None and spec.max_cost_usd <= 0:
            raise AgentFailed(
                ErrorCode.BUDGET_EXCEEDED,
                "cost budget exhausted: nothing left to spend",
                budget="cost",
            )

    async def ask(
        self,
        attempt: Attempt,
        output_type: type[AnswerT],
        prompt: str,
        toolsets: Sequence[AbstractToolset[Any]] = (),
    ) -> AnswerT:
        """One run of the LLM with this agent's prompt, tools and limits; its typed answer."""
        answer, _ = await self.converse(attempt, output_type, prompt, toolsets)
        return answer

    async def converse(
        self,
        attempt: Attempt,
        output_type: type[AnswerT],
        prompt: str,
        toolsets: Sequence[AbstractToolset[Any]] = (),
        history: Sequence[ModelMessage] = (),
    ) -> tuple[AnswerT, list[ModelMessage]]:
        """Like `ask`, continuing the conversation `history`; the answer and the whole
        conversation so far. The attempt's budgets and limits count every run of it."""
        from pydantic_ai import Agent as LlmAgent
        from pydantic_ai.exceptions import (
            ModelAPIError,
            ModelAuthenticationError,
            ModelNotFoundError,
            UnexpectedModelBehavior,
            UsageLimitExceeded,
        )

        attempt.prompt = self.kit.prompts.load(self.prompt_name)
        model = self.kit.llm.for_run(self.agent_type, attempt.meter)
        if model is None:
            raise AgentFailed(ErrorCode.LLM_NOT_CONFIGURED, "no LLM is configured")
        attempt.model = self.kit.llm.model_name(self.agent_type)
        limits = self._usage_limits(attempt)
        agent: LlmAgent[None, AnswerT] = LlmAgent(
            model,
            output_type=output_type,
            instructions=attempt.prompt.text,
            retries=OUTPUT_RETRIES,
        )
        try:
            result = await agent.run(
                prompt,
                usage_limits=limits,
                toolsets=list(toolsets),
                message_history=list(history) or None,
            )
        except StuckDetected as exc:
            raise AgentFailed(ErrorCode.AGENT_STUCK, str(exc)) from None
        except UsageLimitExceeded as exc:
            raise self._over_limit(attempt, exc) from None
        except (ModelAuthenticationError, ModelNotFoundError) as exc:
            raise AgentFailed(
                ErrorCode.LLM_NOT_CONFIGURED,
                f"the LLM provider refused the model or the key: {_short(exc.message)}",
            ) from None
        except ModelAPIError as exc:
            raise AgentFailed(
                ErrorCode.LLM_ERROR, f"the LLM request failed: {_short(exc.message)}"
            ) from None
        except UnexpectedModelBehavior as exc:
            raise AgentFailed(
                ErrorCode.LLM_ERROR, f"the model gave no usable answer: {_short(exc.message)}"
            ) from None
        return result.output, result.all_messages()

    def _usage_limits(self, attempt: Attempt) -> UsageLimits:
        """What is left of the attempt's budgets and the agent's limits for one more run."""
        from pydantic_ai import UsageLimits

        own = self.kit.config.limits_for(self.agent_type)
        spec, used = attempt.spec, attempt.meter.total
        tokens = None if spec.max_tokens is None else max(spec.max_tokens - used.total_tokens, 1)
        cost = None
        if spec.max_cost_usd is not None:
            cost = Decimal(str(max(spec.max_cost_usd - used.cost_usd, 0.0)))
        return UsageLimits(
            request_limit=max(own.max_requests - used.requests, 0),
            tool_calls_limit=max(own.max_tool_calls - used.tool_calls, 0),
            total_tokens_limit=tokens,
            cost_limit=cost,
        )

    def _over_limit(self, attempt: Attempt, exc: UsageLimitExceeded) -> AgentFailed:
        """Say which limit stopped the attempt: a budget of the task, or the agent's own
        (for all the runs of the attempt together)."""
        used, spec = attempt.meter.total, attempt.spec
        own = self.kit.config.limits_for(self.agent_type)
        if spec.max_tokens is not None and used.total_tokens > spec.max_tokens:
            return AgentFailed(
                ErrorCode.BUDGET_EXCEEDED,
                f"token budget exceeded: this attempt used {used.total_tokens} tokens "
                f"and the task's budget had {spec.max_tokens} left",
                budget="tokens",
            )
        if spec.max_cost_usd is not None and used.cost_usd > spec.max_cost_usd:
            return AgentFailed(
                ErrorCode.BUDGET_EXCEEDED,
                f"cost budget exceeded: this attempt spent ${used.cost_usd:.4f} "
                f"and the task's budget had ${spec.max_cost_usd:.4f} left",
                budget="cost",
            )
        if "request_limit" in exc.message:
            return AgentFailed(
                ErrorCode.AGENT_STUCK,
                f"no answer after {own.max_requests} model requests "
                f"(limits.{self.agent_type}.max_requests in agents.yaml)",
            )
        if "tool_calls_limit" in exc.message:
            return AgentFailed(
                ErrorCode.AGENT_STUCK,
                f"no answer after {own.max_tool_calls} tool calls "
                f"(limits.{self.agent_type}.max_tool_calls in agents.yaml)",
            )
        # The task's budgets are the only token and cost limits set (see `_usage_limits`).
        budget: Literal["tokens", "cost"] = "tokens" if spec.max_tokens is not None else "cost"
        return AgentFailed(ErrorCode.BUDGET_EXCEEDED, _short(exc.message), budget=budget)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"
