"""Rules about plans: complexity, routing and approval."""

from __future__ import annotations

from collections.abc import Sequence

from devteam.domain.enums import AgentType, TaskStatus
from devteam.domain.tasks import Task, check_plan_graph
from devteam.orchestration.rules.base import TaskRule, TransitionContext
from devteam.settings.team_leader import TeamLeaderConfig

S = TaskStatus


def plan_violations(
    steps: Sequence[tuple[str, AgentType | None, int, list[str]]], config: TeamLeaderConfig
) -> list[str]:
    """Everything wrong with a plan of (key, agent type, complexity, depends_on) steps."""
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


class EnforceComplexityBudget(TaskRule):
    """A plan stays within the complexity budget; an undivided task within the per-task limit.

    The planner checks plans before it writes them; this guard holds the same
    line for anything else that tries to start work from a plan.
    """

    FROM = frozenset({S.PLANNING})
    TO = frozenset({S.DELEGATED, S.AWAITING_APPROVAL})

    async def before_transition(self, ctx: TransitionContext) -> None:
        children = ctx.tree.children(ctx.task.id)
        config = ctx.config.complexity
        if not children:
            if ctx.task.complexity > config.max_per_task:
                self.reject(
                    ctx,
                    f"complexity {ctx.task.complexity} is above the per-task limit "
                    f"{config.max_per_task}: the task must be decomposed",
                )
            return
        total = sum(c.complexity for c in children)
        if total > config.budget_per_root:
            self.reject(
                ctx,
                f"subtasks add up to complexity {total}, above the budget {config.budget_per_root}",
            )


class RouteByTaskType(TaskRule):
    """A task handed to an agent without naming one goes where the routing table says."""

    FROM = frozenset({S.PLANNING, S.PENDING})
    TO = frozenset({S.DELEGATED, S.AWAITING_APPROVAL})

    async def before_transition(self, ctx: TransitionContext) -> None:
        task = ctx.task
        if task.agent_type is not None or "agent_type" in ctx.updates:
            return
        if ctx.tree.has_children(task.id):
            return
        routing = ctx.config.routing
        agent = routing.table.get(task.task_type)
        how = f"the routing table sends {task.task_type!r} to {agent}"
        if agent is None:
            agent = routing.fallback
            how = f"no route for {task.task_type!r}: fallback {agent}"
        self.rewrite(ctx, how, agent_type=agent)


def needs_approval(task: Task, children: list[Task], config: TeamLeaderConfig) -> str | None:
    if task.require_approval:
        return "approval was requested with the task"
    threshold = config.approval.complexity_threshold
    total = sum(c.complexity for c in children) if children else task.complexity
    if threshold is not None and total > threshold:
        return f"total complexity {total} is above the approval threshold {threshold}"
    return None


class RequireApproval(TaskRule):
    """A plan waits for a person when the request asks, or when it is complex enough."""

    FROM = frozenset({S.PLANNING})
    TO = frozenset({S.DELEGATED})

    async def before_transition(self, ctx: TransitionContext) -> None:
        if ctx.task.parent_id is not None:
            return
        reason = needs_approval(ctx.task, ctx.tree.children(ctx.task.id), ctx.config)
        if reason:
            self.rewrite(ctx, reason, to=S.AWAITING_APPROVAL)
