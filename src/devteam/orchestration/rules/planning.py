"""Rules about plans: complexity, routing and approval."""

from __future__ import annotations

from devteam.domain.enums import TaskStatus
from devteam.domain.tasks import Task
from devteam.orchestration.planning import tree_problems
from devteam.orchestration.rules.base import TaskRule, TransitionContext
from devteam.settings.team_leader import TeamLeaderConfig

S = TaskStatus


class EnforceComplexityBudget(TaskRule):
    """A plan stays within the complexity budget; an undivided task within the per-task limit.

    The planner checks plans before it writes them; this guard holds the same
    line, with the same checks (`planning.plan_problems`), for anything else that
    tries to start work from a plan.
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
        if problems := tree_problems(children, ctx.config):
            self.reject(ctx, "; ".join(problems))


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
