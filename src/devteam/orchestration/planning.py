"""Planning: how a root task is split into subtasks, checked, and inserted.

- An explicit plan (`subtasks` in the request) is used as given.
- A task with an agent, or simple enough (complexity within the per-task limit),
  is handed to one agent directly.
- Otherwise, with an LLM configured, the LLM proposes a typed `Plan`; the rules
  check it and their objections go back to the LLM for a bounded number of
  re-plans. With no LLM, the template of the task type in team_leader.yaml is used.
- Template and LLM plans of the task types in `review.task_types` that change
  code get a `reviewer` step after the implementation when they lack one, and,
  when the task names a project, a `delivery` step after the review.

Every plan, whatever its source, is checked by `plan_problems` (the API refuses
an explicit plan with its problems as a 422; an LLM gets them back to re-plan;
the complexity rule holds the same line). A plan is inserted through the rules
engine: `plan_requests` makes its subtasks' creations and the root's delegation
one transition of the root (`Planning` runs it, in one transaction with the
start of planning when no LLM is needed).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field

from devteam.domain.enums import CODER_TYPES, AgentType, Phase, TaskStatus
from devteam.domain.errors import ErrorCode
from devteam.domain.events import EventType, NewEvent
from devteam.domain.tasks import (
    MAX_SUBTASKS,
    SubtaskRequest,
    Task,
    Usage,
    check_plan_graph,
)
from devteam.observability import tracing
from devteam.observability.logging import get_logger
from devteam.orchestration.attempt import StopReason
from devteam.orchestration.clock import Clock
from devteam.orchestration.engine import Engine, TransitionResult
from devteam.orchestration.queue import WorkItem
from devteam.orchestration.rules.base import TransitionRequest
from devteam.settings.team_leader import TeamLeaderConfig, TemplateStep

if TYPE_CHECKING:
    from pydantic_ai import RunContext
    from pydantic_ai.models import Model

log = get_logger(__name__)

PLAN_CHUNK = 200
"""Tasks (roots and the subtasks of their plans) written in one planning transaction."""

# pydantic-ai is imported when the planner asks an LLM: with none configured, the
# service starts without loading the LLM stack.


PlanSource = Literal["explicit", "direct", "template", "llm"]


class Plan(BaseModel):
    """The subtasks a root task is split into."""

    subtasks: Annotated[list[SubtaskRequest], Field(min_length=1, max_length=MAX_SUBTASKS)]
    rationale: str = ""
    """Why the work is split this way, in a sentence or two."""


@dataclass
class PlanOutcome:
    source: PlanSource
    subtasks: list[SubtaskRequest] = field(default_factory=list)
    rationale: str = ""
    usage: Usage = field(default_factory=Usage)
    replans: int = 0


class PlanningFailed(Exception):
    def __init__(self, code: ErrorCode, message: str, usage: Usage | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.usage = usage or Usage()


DEFAULT_TEMPLATE = [
    TemplateStep(
        key="research",
        agent_type=AgentType.RESEARCH,
        phase=Phase.RESEARCH,
        task="Research what is needed to do this well: {task}",
        complexity_share=0.2,
    ),
    TemplateStep(
        key="analysis",
        agent_type=AgentType.CODEBASE_ANALYZER,
        phase=Phase.ANALYSIS,
        task="Analyse the codebase for what this touches: {task}",
        complexity_share=0.2,
    ),
    TemplateStep(
        key="implementation",
        agent_type=AgentType.BACKEND,
        phase=Phase.IMPLEMENTATION,
        task="Implement, with tests: {task}",
        complexity_share=0.6,
        depends_on=["research", "analysis"],
    ),
]


def template_plan(root: Task, config: TeamLeaderConfig) -> list[SubtaskRequest]:
    steps = config.planner.templates.get(root.task_type) or config.planner.templates.get(
        "default", DEFAULT_TEMPLATE
    )
    limit = config.complexity.max_per_task
    return [
        SubtaskRequest(
            key=step.key,
            agent_type=step.agent_type,
            phase=step.phase,
            task=_fit(step.task.replace("{task}", root.task)),
            complexity=max(1, min(limit, round(root.complexity * step.complexity_share))),
            depends_on=list(step.depends_on),
        )
        for step in steps
    ]


def with_review_and_delivery(
    subtasks: Sequence[SubtaskRequest], root: Task, config: TeamLeaderConfig
) -> list[SubtaskRequest]:
    """The plan, with a review after its code changes and a delivery after the review,
    for the task types in `review.task_types`."""
    steps = list(subtasks)
    if root.task_type not in config.review.task_types:
        return steps
    coders = [s.key for s in steps if s.agent_type in CODER_TYPES]
    if not coders:
        return steps
    keys = {s.key for s in steps}
    reviews = [s.key for s in steps if s.agent_type == AgentType.REVIEWER]
    if not reviews:
        key = _free_key("review", keys)
        steps.append(
            SubtaskRequest(
                key=key,
                agent_type=AgentType.REVIEWER,
                phase=Phase.REVIEW,
                task=_fit(f"Review the change, its tests and its checks: {root.task}"),
                complexity=1,
                depends_on=coders,
            )
        )
        reviews = [key]
    delivers = any(s.agent_type == AgentType.DELIVERY for s in steps)
    if root.project_id is not None and not delivers:
        steps.append(
            SubtaskRequest(
                key=_free_key("delivery", keys),
                agent_type=AgentType.DELIVERY,
                phase=Phase.DELIVERY,
                task=_fit(f"Deliver the reviewed change: {root.task}"),
                complexity=1,
                depends_on=reviews,
            )
        )
    return steps


def _free_key(key: str, taken: set[str]) -> str:
    candidate, n = key, 1
    while candidate in taken:
        n += 1
        candidate = f"{key}-{n}"
    taken.add(candidate)
    return candidate


def _fit(text: str) -> str:
    text = text.strip()
    if len(text) < 10:
        text = text.ljust(10, ".")
    return text[:10_000]


PlanStep = tuple[str, AgentType | None, int, list[str]]
"""A plan step as the checks see it: key, agent type, complexity, keys it depends on."""


def plan_problems(steps: Sequence[PlanStep], config: TeamLeaderConfig) -> list[str]:
    """Everything wrong with a plan: the one place plans are checked."""
    problems: list[str] = []
    if not steps:
        return ["a plan needs at least one subtask"]
    try:
        check_plan_graph([(key, deps) for key, _, _, deps in steps])
    except ValueError as exc:
        problems.append(str(exc))
    limit = config.complexity.max_per_task
    for key, agent_type, complexity, _ in steps:
        if complexity > limit:
            problems.append(
                f"subtask {key!r} has complexity {complexity}, above the per-task limit "
                f"{limit}: split it"
            )
        if agent_type is None:
            problems.append(f"subtask {key!r} names no agent type")
    total = sum(complexity for _, _, complexity, _ in steps)
    if total > config.complexity.budget_per_root:
        problems.append(
            f"the subtasks' complexity adds up to {total}, above the budget of "
            f"{config.complexity.budget_per_root} per root task"
        )
    return problems


def violations(subtasks: Sequence[SubtaskRequest], config: TeamLeaderConfig) -> list[str]:
    """`plan_problems` of a plan as requested."""
    return plan_problems(
        [(s.key, s.agent_type, s.complexity, list(s.depends_on)) for s in subtasks], config
    )


def tree_problems(children: Sequence[Task], config: TeamLeaderConfig) -> list[str]:
    """`plan_problems` of a plan already made into subtasks."""
    keys = {c.id: c.key or str(c.id) for c in children}
    return plan_problems(
        [
            (keys[c.id], c.agent_type, c.complexity, [keys.get(d, str(d)) for d in c.depends_on])
            for c in children
        ],
        config,
    )


@dataclass
class _PlannerDeps:
    config: TeamLeaderConfig
    attempts: int = 0


class Planner:
    def __init__(
        self,
        model: Callable[[], Model | None] | None = None,
        prompt_path: Path | None = None,
    ) -> None:
        self._model = model or (lambda: None)
        self._prompt_path = prompt_path

    async def plan(self, root: Task, config: TeamLeaderConfig) -> PlanOutcome:
        outcome = self.plan_now(root, config)
        if outcome is not None:
            return outcome
        model = self._model()
        assert model is not None
        return await self._plan_with_llm(root, config, model)

    def plan_now(self, root: Task, config: TeamLeaderConfig) -> PlanOutcome | None:
        """The plan, when it takes no LLM (explicit, direct, template); None otherwise."""
        if root.plan is not None:
            return PlanOutcome("explicit", list(root.plan))
        if root.complexity <= config.complexity.max_per_task:
            return PlanOutcome("direct")
        if self._model() is not None:
            return None
        subtasks = with_review_and_delivery(template_plan(root, config), root, config)
        if problems := violations(subtasks, config):
            raise PlanningFailed(
                ErrorCode.VALIDATION_ERROR,
                "the template plan breaks the rules: " + "; ".join(problems),
            )
        return PlanOutcome("template", subtasks)

    def _instructions(self) -> str:
        if self._prompt_path is not None and self._prompt_path.is_file():
            return self._prompt_path.read_text(encoding="utf-8")
        return (
            "You are the TeamLeader of an AI development team. Split the task into "
            "subtasks for the research, codebase_analyzer, frontend and backend agents."
        )

    async def _plan_with_llm(
        self, root: Task, config: TeamLeaderConfig, model: Model
    ) -> PlanOutcome:
        from pydantic_ai import Agent, ModelRetry, UsageLimits
        from pydantic_ai.exceptions import AgentRunError, UnexpectedModelBehavior

        agent: Agent[_PlannerDeps, Plan] = Agent(
            model,
            output_type=Plan,
            deps_type=_PlannerDeps,
            instructions=self._instructions(),
            retries=config.planner.max_replans,
        )

        @agent.output_validator
        async def follow_the_rules(ctx: RunContext[_PlannerDeps], plan: Plan) -> Plan:
            ctx.deps.attempts += 1
            plan.subtasks = with_review_and_delivery(plan.subtasks, root, ctx.deps.config)
            if problems := violations(plan.subtasks, ctx.deps.config):
                raise ModelRetry(
                    "The plan breaks these rules; send a corrected plan: " + "; ".join(problems)
                )
            return plan

        deps = _PlannerDeps(config)
        limits = UsageLimits(request_limit=config.planner.max_replans + 2)
        try:
            result = await agent.run(_planning_prompt(root, config), deps=deps, usage_limits=limits)
        except UnexpectedModelBehavior as exc:
            raise PlanningFailed(
                ErrorCode.LLM_ERROR,
                f"no valid plan after {config.planner.max_replans} re-plans: {exc.message}",
            ) from None
        except AgentRunError as exc:
            raise PlanningFailed(ErrorCode.LLM_ERROR, f"the planner's LLM failed: {exc}") from None
        run_usage = result.usage
        usage = Usage(
            requests=run_usage.requests,
            input_tokens=run_usage.input_tokens or 0,
            output_tokens=run_usage.output_tokens or 0,
            tool_calls=run_usage.tool_calls or 0,
            cost_usd=float(run_usage.cost or 0.0),
        )
        return PlanOutcome(
            "llm",
            list(result.output.subtasks),
            result.output.rationale,
            usage,
            replans=max(deps.attempts - 1, 0),
        )


def _planning_prompt(root: Task, config: TeamLeaderConfig) -> str:
    phases = ", ".join(str(p) for p in config.phases)
    return (
        f"Task ({root.task_type}, complexity {root.complexity}):\n{root.task}\n\n"
        f"Rules: each subtask's complexity is at most {config.complexity.max_per_task}; "
        f"the subtasks' complexities add up to at most {config.complexity.budget_per_root}; "
        f"phases run in this order: {phases}; depends_on names keys of other subtasks "
        "and must not form a cycle; agent_type is one of research, codebase_analyzer, "
        "frontend, backend (a review and a delivery step are added after code changes "
        "where the rules ask for them)."
    )


def build_subtasks(root: Task, plan: Sequence[SubtaskRequest], now: Any) -> list[Task]:
    """Task rows for a plan, children of `root`, in plan order.

    Built without validation: every value comes from the root and the plan's steps,
    both validated already (a plan of 50 steps is on the way of its first start).
    """
    ids = {step.key: uuid.uuid4() for step in plan}
    return [
        Task.model_construct(
            id=ids[step.key],
            parent_id=root.id,
            root_id=root.root_id,
            key=step.key,
            status=TaskStatus.PENDING,
            agent_type=step.agent_type,
            task_type=step.task_type or root.task_type,
            task=step.task,
            complexity=step.complexity,
            priority=step.priority or root.priority,
            project_id=root.project_id,
            metadata=root.metadata,
            phase=step.effective_phase,
            depends_on=[ids[k] for k in step.depends_on],
            require_approval=False,
            budget=None,
            attempt=1,
            version=0,
            created_by=root.created_by,
            # Microseconds apart, so listing by creation time keeps the plan's order.
            created_at=now + timedelta(microseconds=i),
            updated_at=now,
            started_at=None,
            finished_at=None,
            result=None,
            error=None,
            usage=Usage(),
            trace_parent=root.trace_parent,
        )
        for i, step in enumerate(plan)
    ]


def plan_requests(root: Task, outcome: PlanOutcome, now: Any) -> TransitionRequest:
    """The root's transition that inserts its plan: its subtasks are created, then the root
    is delegated (and `task.planned` recorded just before), all through the rules."""
    subtasks = build_subtasks(root, outcome.subtasks, now)
    planned = NewEvent(
        type=EventType.TASK_PLANNED,
        data={
            "planner": outcome.source,
            "rationale": outcome.rationale,
            "replans": outcome.replans,
            "subtasks": [
                {
                    "id": str(s.id),
                    "key": s.key,
                    "task": s.task,
                    "agent_type": s.agent_type,
                    "phase": s.phase,
                    "complexity": s.complexity,
                    "depends_on": [str(d) for d in s.depends_on],
                }
                for s in subtasks
            ],
        },
    )
    return TransitionRequest(
        root.id,
        TaskStatus.DELEGATED,
        reason=f"planned ({outcome.source})",
        updates={"usage_delta": outcome.usage},
        events_before=[planned],
        creates=subtasks,
        expect_status=TaskStatus.PLANNING,
    )


def planning_failed(root: Task, exc: PlanningFailed) -> TransitionRequest:
    return TransitionRequest(
        root.id,
        TaskStatus.FAILED,
        updates={
            "error": {"code": exc.code.value, "message": exc.message},
            "usage_delta": exc.usage,
        },
    )


class Planning:
    """Plans the root tasks an executor takes off the plan queue.

    A batch of roots starts planning in one transaction; the plans that need no
    LLM are made and inserted in that same transaction. A root that needs an LLM
    stays `planning` under the executor's lease while `with_llm` asks it.
    """

    def __init__(
        self,
        engine: Engine,
        planner: Planner,
        config: Callable[[], TeamLeaderConfig],
        clock: Clock,
        owner: str,
    ) -> None:
        self.engine = engine
        self.planner = planner
        self.config = config
        self.clock = clock
        self.owner = owner

    async def start(self, items: Sequence[WorkItem]) -> list[TransitionResult]:
        """Start planning each item's root; each result's tree holds the root as it is now
        (still `planning`: an LLM must plan it)."""
        config = self.config()
        async with self.engine.store.read_statement() as tx:
            roots = await tx.tasks.load_trees([i.root_id for i in items], for_update=False)
        now = self.clock.now()
        lease = {
            "lease_owner": self.owner,
            "lease_expires_at": now + timedelta(seconds=config.leases.duration_s),
        }
        requests = []
        sizes = []
        for item in items:
            request = TransitionRequest(
                item.task_id, TaskStatus.PLANNING, updates=dict(lease), expect_attempt=item.attempt
            )
            root = next((t for t in roots.get(item.root_id, ()) if t.id == item.task_id), None)
            if root is not None and root.status == TaskStatus.PENDING:
                try:
                    with (
                        tracing.continued(item.traceparent or root.trace_parent),
                        tracing.span("team_leader.plan", devteam_task_id=str(root.id)),
                    ):
                        outcome = self.planner.plan_now(root, config)
                except PlanningFailed as exc:
                    request.then = [planning_failed(root, exc)]
                else:
                    if outcome is not None:
                        request.then = [plan_requests(root, outcome, now)]
            requests.append(request)
            sizes.append(1 + sum(len(r.creates) for r in request.then))
        # In transactions of about PLAN_CHUNK tasks: the first plans' work starts (and runs)
        # while the next ones are written.
        results: list[TransitionResult] = []
        start = 0
        while start < len(requests):
            end, size = start, 0
            while end < len(requests) and (end == start or size + sizes[end] <= PLAN_CHUNK):
                size += sizes[end]
                end += 1
            results += await self.engine.transition_many(
                requests[start:end], root_ids=[i.root_id for i in items[start:end]]
            )
            start = end
        return results

    async def with_llm(self, root: Task, stop_reason: Callable[[], StopReason | None]) -> None:
        """Plan `root` with the LLM and insert the plan; `stop_reason` says why, if this was
        cancelled."""
        config = self.config()
        try:
            outcome = await self.planner.plan(root, config)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            reason = stop_reason()
            if reason is StopReason.LEASE_LOST:
                return
            target = TaskStatus.CANCELLED if reason is StopReason.CANCEL else TaskStatus.PENDING
            await self.engine.transition(root.id, target, root_id=root.id, reason="stopped")
        except PlanningFailed as exc:
            await self.engine.transition_many([planning_failed(root, exc)], root_ids=[root.id])
        except Exception as exc:
            log.exception("planning failed")
            await self.engine.transition(
                root.id,
                TaskStatus.FAILED,
                root_id=root.id,
                error={"code": ErrorCode.INTERNAL_ERROR.value, "message": str(exc)},
            )
        else:
            request = plan_requests(root, outcome, self.clock.now())
            request.expect_lease_owner = self.owner
            await self.engine.transition_many([request], root_ids=[root.id])
