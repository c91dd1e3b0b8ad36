"""Token and cost budgets: usage adds up the tree, and a root over budget stops."""

from __future__ import annotations

from typing import Literal

from devteam.domain.enums import TERMINAL_STATUSES, TaskStatus
from devteam.domain.errors import ErrorCode
from devteam.domain.tasks import Task, Usage
from devteam.orchestration.rules.base import (
    BookkeepingRule,
    TaskRule,
    TransitionContext,
    TransitionRequest,
)

S = TaskStatus


class AddUsageToParents(BookkeepingRule):
    """What an attempt used counts on its task and on every task above it."""

    async def after_transition(self, ctx: TransitionContext) -> None:
        delta = ctx.updates.get("usage_delta")
        if not isinstance(delta, Usage) or delta == Usage():
            return
        ancestors: list[Task] = []
        parent = ctx.tree.parent(ctx.task)
        while parent is not None:
            ancestors.append(parent)
            parent = ctx.tree.parent(parent)
        for ancestor in ancestors:
            ctx.update(ancestor, usage=ancestor.usage + delta)


def exceeded_budget(root: Task) -> tuple[Literal["tokens", "cost"], str] | None:
    """Which budget the root task has gone over, and in words; None when none."""
    budget = root.budget
    if budget is None:
        return None
    usage = root.usage
    if budget.max_tokens is not None and usage.total_tokens > budget.max_tokens:
        return "tokens", (
            f"token budget exceeded: {usage.total_tokens} of {budget.max_tokens} tokens used"
        )
    if budget.max_cost_usd is not None and usage.cost_usd > budget.max_cost_usd:
        return "cost", (
            f"cost budget exceeded: ${usage.cost_usd:.4f} of ${budget.max_cost_usd:.4f} spent"
        )
    return None


class StopRootOverBudget(TaskRule):
    """A root task whose usage goes over its token or cost budget fails `budget_exceeded`.

    Its unfinished subtasks are then cancelled by the cancellation rules.
    """

    async def after_transition(self, ctx: TransitionContext) -> None:
        if not isinstance(ctx.updates.get("usage_delta"), Usage):
            return
        root = ctx.tree.root
        if root.status in TERMINAL_STATUSES or root.id == ctx.task.id:
            return
        if exceeded := exceeded_budget(root):
            budget, reason = exceeded
            ctx.cascade.append(
                TransitionRequest(
                    root.id,
                    S.FAILED,
                    reason=reason,
                    updates={"error": {"code": ErrorCode.BUDGET_EXCEEDED.value, "message": reason}},
                    event_data={"budget": budget},
                )
            )
