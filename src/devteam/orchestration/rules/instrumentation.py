"""Bookkeeping at the end of the policy: leases, the work queue, events, metrics.

These rules decide nothing; they keep the records every transition leaves.
`DelegateReadyWork` sits with them as the reaction that hands ready work on.
"""

from __future__ import annotations

from typing import Any

from devteam.domain.enums import TERMINAL_STATUSES, TaskStatus
from devteam.domain.events import EventType
from devteam.observability import metrics
from devteam.orchestration.rules.base import (
    ALL_STATUSES,
    CREATION,
    BookkeepingRule,
    TaskRule,
    TransitionContext,
    TransitionRequest,
)

S = TaskStatus

_STATUS_EVENTS = {
    S.PENDING: EventType.TASK_PROGRESS,
    S.PLANNING: EventType.TASK_PROGRESS,
    S.AWAITING_APPROVAL: EventType.TASK_AWAITING_APPROVAL,
    S.DELEGATED: EventType.TASK_DELEGATED,
    S.IN_PROGRESS: EventType.TASK_STARTED,
    S.CANCELLING: EventType.TASK_PROGRESS,
    S.COMPLETED: EventType.TASK_COMPLETED,
    S.FAILED: EventType.TASK_FAILED,
    S.CANCELLED: EventType.TASK_CANCELLED,
}


def status_event(from_status: TaskStatus | None, to_status: TaskStatus) -> EventType:
    if from_status is None:
        return EventType.TASK_CREATED
    if from_status == S.AWAITING_APPROVAL and to_status == S.DELEGATED:
        return EventType.TASK_APPROVED
    if from_status == S.IN_PROGRESS and to_status == S.DELEGATED:
        return EventType.TASK_RETRYING
    return _STATUS_EVENTS[to_status]


class DelegateReadyWork(TaskRule):
    """When a parent is delegated, or a child completes, pending children are tried again.

    Whether each may go now is for the dependency and phase rules to say.
    """

    TO = frozenset({S.DELEGATED, S.COMPLETED})

    async def after_transition(self, ctx: TransitionContext) -> None:
        if ctx.proposed == S.DELEGATED:
            candidates = ctx.tree.children(ctx.task.id)
        else:
            if ctx.task.parent_id is None:
                return
            candidates = ctx.tree.children(ctx.task.parent_id)
        for child in candidates:
            if child.status == S.PENDING:
                ctx.cascade.append(TransitionRequest(child.id, S.DELEGATED, reason="ready"))


class ManageLeases(BookkeepingRule):
    """Leaving a running status gives the lease up and frees a concurrency slot."""

    FROM = frozenset({S.PLANNING, S.IN_PROGRESS, S.CANCELLING})

    async def before_transition(self, ctx: TransitionContext) -> None:
        keeps_running = ctx.from_status == S.IN_PROGRESS and ctx.proposed == S.CANCELLING
        if not keeps_running and ctx.proposed != ctx.from_status:
            self.write(ctx, lease_owner=None, lease_expires_at=None)

    async def after_transition(self, ctx: TransitionContext) -> None:
        gave_up = ctx.updated is not None and ctx.updated.lease_owner is None
        if ctx.from_status != S.PLANNING and ctx.task.lease_owner is not None and gave_up:
            ctx.outbox.capacity_freed = True


class EnqueueReadyWork(BookkeepingRule):
    """Work that becomes ready goes on the work queue (after commit), once per attempt.

    A new root, or a root back to `pending`, is queued for planning; a leaf task
    `delegated` is queued for an agent, at once or when its retry back-off ends.
    This rule alone sets `queued_at`: when the task last went on the queue.
    """

    FROM = ALL_STATUSES | CREATION
    TO = frozenset({S.DELEGATED, S.PENDING})

    async def before_transition(self, ctx: TransitionContext) -> None:
        if ctx.proposed == S.PENDING or ctx.tree.has_children(ctx.task.id):
            return
        not_before = ctx.updates.get("not_before", ctx.task.not_before)
        backing_off = not_before is not None and not_before > ctx.now
        self.write(ctx, queued_at=None if backing_off else ctx.now)

    async def after_transition(self, ctx: TransitionContext) -> None:
        task = ctx.updated
        if task is None:
            return
        if ctx.proposed == S.PENDING:
            if task.parent_id is None:
                ctx.outbox.enqueue.append(task)
            return
        if ctx.tree.has_children(task.id):
            return
        if task.queued_at is not None:
            ctx.outbox.enqueue.append(task)
        elif task.not_before is not None:
            ctx.outbox.enqueue_at.append((task, task.not_before))


class RecordStatusEvent(BookkeepingRule):
    """Every status change is an event in the root task's history; so is every task's
    creation (`task.created`), the root's and each subtask's alike."""

    FROM = ALL_STATUSES | CREATION

    async def after_transition(self, ctx: TransitionContext) -> None:
        task = ctx.updated
        if task is None or ctx.from_status == task.status:
            return
        if ctx.creating:
            ctx.emit(EventType.TASK_CREATED, **created_data(task))
            return
        data: dict[str, Any] = {
            "status": task.status.value,
            "from": ctx.task.status.value,
            "attempt": task.attempt,
        }
        if task.key:
            data["key"] = task.key
        if not task.is_root:
            # A subtask's events say what it does, so a live view needs no extra read.
            data["task"] = task.task
        if task.agent_type:
            data["agent_type"] = task.agent_type.value
        if ctx.reason:
            data["reason"] = ctx.reason
        if task.error and task.status in (S.FAILED, S.CANCELLED):
            data["error"] = task.error.model_dump()
        if task.status == S.COMPLETED:
            data["usage"] = task.usage.model_dump()
        data.update(ctx.event_data)
        ctx.emit(status_event(ctx.from_status, task.status), **data)


def created_data(task: Any) -> dict[str, Any]:
    """What `task.created` says about a new task."""
    data: dict[str, Any] = {
        "status": task.status.value,
        "task_type": task.task_type,
        "agent_type": task.agent_type,
        "complexity": task.complexity,
        "priority": task.priority,
        "project_id": task.project_id,
    }
    if task.is_root:
        data["require_approval"] = task.require_approval
        data["created_by"] = str(task.created_by)
    else:
        data.update(
            key=task.key,
            task=task.task,
            phase=task.phase,
            depends_on=[str(d) for d in task.depends_on],
        )
    return data


class CountTransitions(BookkeepingRule):
    """Metrics of every change: transitions, durations, retries, waits, decisions."""

    async def after_transition(self, ctx: TransitionContext) -> None:
        task = ctx.updated
        if task is None or ctx.from_status == task.status:
            return
        from_status, to_status = ctx.task.status, task.status
        agent = task.agent_type.value if task.agent_type else "none"
        decisions = [
            (e.data["rule"], e.data["decision"])
            for e in ctx.own_events
            if e.type == EventType.RULE_DECISION
        ]
        queued_wait = (
            (ctx.now - ctx.task.queued_at).total_seconds()
            if to_status == S.IN_PROGRESS and ctx.task.queued_at
            else None
        )
        duration = (
            (ctx.now - task.started_at).total_seconds()
            if to_status in TERMINAL_STATUSES and task.started_at
            else None
        )
        budget = ctx.event_data.get("budget") if to_status == S.FAILED else None

        def record() -> None:
            metrics.series(metrics.TASK_TRANSITIONS, from_status.value, to_status.value).inc()
            for rule, decision in decisions:
                metrics.series(metrics.RULE_DECISIONS, rule, decision).inc()
            if from_status == S.IN_PROGRESS and to_status == S.DELEGATED:
                metrics.series(metrics.TASK_RETRIES, agent).inc()
            if queued_wait is not None:
                metrics.series(metrics.QUEUE_WAIT, agent).observe(max(queued_wait, 0.0))
            if duration is not None:
                metrics.series(metrics.TASK_DURATION, agent, to_status.value).observe(
                    max(duration, 0.0)
                )
            if budget is not None:
                metrics.series(metrics.BUDGETS_EXCEEDED, budget).inc()

        ctx.outbox.callbacks.append(record)
