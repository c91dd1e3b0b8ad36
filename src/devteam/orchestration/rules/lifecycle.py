"""Rules of the task lifecycle: valid moves, cancellation, parents following children."""

from __future__ import annotations

from typing import Any

from devteam.domain.enums import RUNNING_STATUSES, TERMINAL_STATUSES, TaskStatus
from devteam.domain.errors import ErrorCode
from devteam.domain.tasks import Task
from devteam.orchestration.rules.base import (
    ALL_STATUSES,
    CREATION,
    Source,
    TaskRule,
    TransitionContext,
    TransitionRequest,
)

S = TaskStatus

ALLOWED: dict[Source, frozenset[TaskStatus]] = {
    None: frozenset({S.PENDING}),
    S.PENDING: frozenset({S.PLANNING, S.DELEGATED, S.FAILED, S.CANCELLING, S.CANCELLED}),
    S.PLANNING: frozenset(
        {S.PENDING, S.DELEGATED, S.AWAITING_APPROVAL, S.FAILED, S.CANCELLING, S.CANCELLED}
    ),
    S.AWAITING_APPROVAL: frozenset({S.DELEGATED, S.FAILED, S.CANCELLING, S.CANCELLED}),
    # delegated => delegated: back on the work queue (its lost item, or a back-off ended).
    S.DELEGATED: frozenset(
        {S.DELEGATED, S.IN_PROGRESS, S.COMPLETED, S.FAILED, S.CANCELLING, S.CANCELLED}
    ),
    S.IN_PROGRESS: frozenset({S.DELEGATED, S.COMPLETED, S.FAILED, S.CANCELLING, S.CANCELLED}),
    S.CANCELLING: frozenset({S.CANCELLED, S.FAILED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}
"""The state machine: every status change must be one of these moves (from None: a task's
creation)."""


class AllowOnlyValidMoves(TaskRule):
    """A task only moves along the state machine; a finished task never moves again.

    This is what keeps a completed subtask from ever running twice: a late or
    duplicated message cannot take it back to `in_progress`.
    """

    FROM = ALL_STATUSES | CREATION

    async def before_transition(self, ctx: TransitionContext) -> None:
        if ctx.proposed not in ALLOWED[ctx.from_status]:
            if ctx.from_status in TERMINAL_STATUSES:
                self.reject(ctx, f"the task is already {ctx.from_status}")
            else:
                self.reject(ctx, f"cannot go from {ctx.from_status} to {ctx.proposed}")


class HonourCancellation(TaskRule):
    """Once cancellation is asked for, an attempt that ends anyhow ends `cancelled`."""

    FROM = frozenset({S.CANCELLING})
    TO = frozenset({S.COMPLETED, S.FAILED, S.DELEGATED, S.IN_PROGRESS})

    async def before_transition(self, ctx: TransitionContext) -> None:
        self.rewrite(ctx, "cancellation was requested", to=S.CANCELLED)


class CancelIdleWorkAtOnce(TaskRule):
    """Cancelling work that is not running ends it at once; running work is asked to stop."""

    FROM = frozenset({S.PENDING, S.AWAITING_APPROVAL, S.DELEGATED, S.IN_PROGRESS, S.PLANNING})
    TO = frozenset({S.CANCELLING})

    async def before_transition(self, ctx: TransitionContext) -> None:
        running_itself = ctx.task.lease_owner is not None and ctx.from_status in (
            S.IN_PROGRESS,
            S.PLANNING,
        )
        running_children = [
            c for c in ctx.tree.children(ctx.task.id) if c.status in RUNNING_STATUSES
        ]
        if not running_itself and not running_children:
            self.rewrite(ctx, "nothing of it is running: cancelled at once", to=S.CANCELLED)


class CreateOnlyUnderActiveParents(TaskRule):
    """A subtask is created only while its parent is still to finish: a plan that arrives
    after its root was cancelled, or a revision after its parent failed, is dropped."""

    FROM = CREATION

    async def before_transition(self, ctx: TransitionContext) -> None:
        parent = ctx.tree.parent(ctx.task)
        stopping = parent is not None and (
            parent.status in TERMINAL_STATUSES or parent.status == S.CANCELLING
        )
        if parent is not None and stopping:
            self.reject(ctx, f"the parent task is {parent.status}")


class PropagateCancellation(TaskRule):
    """Cancelling or failing a parent stops its unfinished children and their agents."""

    TO = frozenset({S.CANCELLING, S.CANCELLED, S.FAILED})

    async def after_transition(self, ctx: TransitionContext) -> None:
        for child in ctx.tree.children(ctx.task.id):
            if child.status in TERMINAL_STATUSES or child.status == S.CANCELLING:
                continue
            ctx.cascade.append(
                TransitionRequest(
                    child.id,
                    S.CANCELLING,
                    reason=f"parent {ctx.proposed}",
                    updates={"error": _error(ErrorCode.CANCELLED, f"parent task {ctx.proposed}")},
                )
            )
        attempt_running = ctx.task.lease_owner is not None and ctx.proposed == S.CANCELLING
        if attempt_running:
            ctx.outbox.cancel.append(ctx.task.id)


class FinishCancellation(TaskRule):
    """A cancelling parent ends `cancelled` once none of its children is running."""

    TO = TERMINAL_STATUSES

    async def after_transition(self, ctx: TransitionContext) -> None:
        parent = ctx.tree.parent(ctx.task)
        if parent is None or parent.status != S.CANCELLING:
            return
        if all(c.status in TERMINAL_STATUSES for c in ctx.tree.children(parent.id)):
            ctx.cascade.append(TransitionRequest(parent.id, S.CANCELLED, reason="children stopped"))


class StartParentWithFirstChild(TaskRule):
    """A planned parent is `in_progress` from the moment its first child starts."""

    TO = frozenset({S.IN_PROGRESS})

    async def after_transition(self, ctx: TransitionContext) -> None:
        parent = ctx.tree.parent(ctx.task)
        if parent is not None and parent.status == S.DELEGATED:
            ctx.cascade.append(
                TransitionRequest(parent.id, S.IN_PROGRESS, reason="first subtask started")
            )


class CompleteParentWhenChildrenComplete(TaskRule):
    """A parent completes when all its children have; its result gathers theirs."""

    TO = frozenset({S.COMPLETED})

    async def after_transition(self, ctx: TransitionContext) -> None:
        parent = ctx.tree.parent(ctx.task)
        if parent is None or parent.status not in (S.DELEGATED, S.IN_PROGRESS):
            return
        children = ctx.tree.children(parent.id)
        if all(c.status == S.COMPLETED for c in children):
            ctx.cascade.append(
                TransitionRequest(
                    parent.id,
                    S.COMPLETED,
                    reason="every subtask completed",
                    updates={"result": gather_results(children)},
                )
            )


class FailParentWhenChildFails(TaskRule):
    """A child that fails for good fails its parent; the parent's other children stop."""

    TO = frozenset({S.FAILED})

    async def after_transition(self, ctx: TransitionContext) -> None:
        parent = ctx.tree.parent(ctx.task)
        if parent is None or parent.status in TERMINAL_STATUSES:
            return
        error = (ctx.updated or ctx.task).error
        code = error.code if error else ErrorCode.DEPENDENCY_FAILED.value
        message = error.message if error else "failed"
        name = ctx.task.key or str(ctx.task.id)
        ctx.cascade.append(
            TransitionRequest(
                parent.id,
                S.FAILED,
                reason=f"subtask {name} failed",
                updates={
                    "error": _error(code, f"subtask {name!r} failed: {message}"),
                    "result": gather_results(ctx.tree.children(parent.id)),
                },
            )
        )


def gather_results(children: list[Task]) -> dict[str, Any]:
    """A parent's result: each child's outcome, keyed by its plan key; and, when the
    children changed code, whether the changes are verified, the last review's verdict
    and the delivery."""
    return {
        **work_outcome(children),
        "subtasks": {
            (child.key or str(child.id)): {
                "id": str(child.id),
                "agent_type": child.agent_type,
                "status": child.status,
                "result": child.result,
                "error": child.error.model_dump() if child.error else None,
            }
            for child in children
        },
    }


def work_outcome(children: list[Task]) -> dict[str, Any]:
    """`verified` (every latest change passes its checks), `review` (the last verdict) and
    `delivery` (pushed branches and pull requests), for the children that produced them."""
    outputs = {
        kind: [
            c.result["output"]
            for c in children
            if c.result and c.result.get("output_type") == kind and c.result.get("output")
        ]
        for kind in ("CodeChange", "Review", "Delivery")
    }
    outcome: dict[str, Any] = {}
    latest: dict[str, dict[str, Any]] = {}
    for change in outputs["CodeChange"]:
        branch = str(change.get("branch"))
        if branch not in latest or change.get("revision", 1) > latest[branch].get("revision", 1):
            latest[branch] = change
    if latest:
        outcome["verified"] = all(bool(c.get("verified")) for c in latest.values())
    if outputs["Review"]:
        last = max(outputs["Review"], key=lambda r: int(r.get("round", 1)))
        outcome["review"] = {"verdict": last.get("verdict"), "round": last.get("round", 1)}
    if outputs["Delivery"]:
        outcome["delivery"] = outputs["Delivery"][-1]
    return outcome


def _error(code: str, message: str) -> dict[str, str]:
    return {"code": str(code), "message": message}
