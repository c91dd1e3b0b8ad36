"""Rules about when work may start: phases, dependencies, back-off, limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

from devteam.domain.enums import TaskStatus
from devteam.domain.errors import ErrorCode
from devteam.domain.tasks import phase_rank, phase_ranks
from devteam.orchestration.rules.base import TaskRule, TransitionContext

S = TaskStatus


class WaitForParentToRun(TaskRule):
    """Subtasks stay pending while their parent waits for approval or is stopping."""

    FROM = frozenset({S.PENDING})
    TO = frozenset({S.DELEGATED})

    async def before_transition(self, ctx: TransitionContext) -> None:
        parent = ctx.tree.parent(ctx.task)
        if parent is not None and parent.status not in (S.DELEGATED, S.IN_PROGRESS):
            self.delay(ctx, f"the parent task is {parent.status}")


class WaitForEarlierPhases(TaskRule):
    """A subtask starts only when every sibling of an earlier phase has completed.

    Phases run in the order of `phases` in team_leader.yaml (research, analysis,
    implementation, review by default).
    """

    FROM = frozenset({S.PENDING})
    TO = frozenset({S.DELEGATED})

    async def before_transition(self, ctx: TransitionContext) -> None:
        if ctx.task.parent_id is None:
            return
        phases = phase_ranks(ctx.config.phases)
        mine = phase_rank(ctx.task, phases)
        earlier = [
            s
            for s in ctx.tree.children(ctx.task.parent_id)
            if s.status != S.COMPLETED
            and s.phase != ctx.task.phase
            and phase_rank(s, phases) < mine
        ]
        if earlier:
            names = sorted({str(s.phase) for s in earlier})
            self.delay(ctx, f"waiting for the {', '.join(names)} phase to finish")


class WaitForDependencies(TaskRule):
    """A subtask may start only when every task it depends on has completed."""

    FROM = frozenset({S.PENDING, S.DELEGATED})
    TO = frozenset({S.DELEGATED, S.IN_PROGRESS})

    async def before_transition(self, ctx: TransitionContext) -> None:
        pending = [
            ctx.tree.get(dep)
            for dep in ctx.task.depends_on
            if ctx.tree.get(dep).status != S.COMPLETED
        ]
        if pending:
            names = ", ".join(t.key or str(t.id) for t in pending)
            self.delay(ctx, f"waiting for {len(pending)} dependencies: {names}")


class WaitForRetryBackoff(TaskRule):
    """A retried attempt starts no earlier than its back-off allows."""

    FROM = frozenset({S.DELEGATED})
    TO = frozenset({S.IN_PROGRESS})

    async def before_transition(self, ctx: TransitionContext) -> None:
        not_before = ctx.task.not_before
        if not_before is not None and not_before > ctx.now:
            wait = (not_before - ctx.now).total_seconds()
            self.delay(ctx, f"retry back-off: {wait:.1f}s to go", until=not_before)


def queue_wait_exceeded(limit_s: float) -> dict[str, Any]:
    """The error of work that waited longer than `timeouts.queue_wait_s` to start (the rule
    below and the sweeper, which finds work nobody tried to start, write the same)."""
    return {
        "code": ErrorCode.TIMEOUT.value,
        "message": f"not started within the queue wait timeout of {limit_s:g}s",
    }


class TimeOutQueueWait(TaskRule):
    """Work that waited longer than `timeouts.queue_wait_s` to start fails instead."""

    FROM = frozenset({S.DELEGATED})
    TO = frozenset({S.IN_PROGRESS})

    async def before_transition(self, ctx: TransitionContext) -> None:
        queued = ctx.task.queued_at
        limit = ctx.config.timeouts.queue_wait_s
        if queued is not None and ctx.now - queued > timedelta(seconds=limit):
            self.rewrite(
                ctx,
                f"waited more than {limit:g}s in the queue",
                to=S.FAILED,
                error=queue_wait_exceeded(limit),
            )


@dataclass
class RunningCounts:
    """Attempts running now, counted once per transaction and kept current as it starts more."""

    total: int
    by_user: dict[UUID, int] = field(default_factory=dict)
    by_agent: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: list[tuple[UUID, str | None, int]]) -> RunningCounts:
        counts = cls(total=0)
        for user, agent, n in rows:
            counts.total += n
            counts.by_user[user] = counts.by_user.get(user, 0) + n
            if agent is not None:
                counts.by_agent[agent] = counts.by_agent.get(agent, 0) + n
        return counts


class LimitConcurrency(TaskRule):
    """At most `concurrency.global` attempts run at once, and per user and agent type.

    Starts take a lock (Postgres advisory lock; SQLite writes are serial anyway)
    before counting, so two processes starting work at the same moment cannot
    both take the last slot. A batch of starts counts once and adds its own.
    """

    FROM = frozenset({S.DELEGATED})
    TO = frozenset({S.IN_PROGRESS})

    async def before_transition(self, ctx: TransitionContext) -> None:
        if ctx.tree.has_children(ctx.task.id):
            return  # a parent runs no agent of its own: it takes no slot
        config = ctx.config.concurrency
        counts: RunningCounts | None = ctx.tx.memo.get("running")
        if counts is None:
            counts = RunningCounts.of(await ctx.tx.tasks.lock_starts())
            ctx.tx.memo["running"] = counts
        if counts.total >= config.global_limit:
            self.delay(ctx, f"global limit: {counts.total} of {config.global_limit} running")
            return
        user = ctx.task.created_by
        mine = counts.by_user.get(user, 0)
        if mine >= config.per_user:
            self.delay(ctx, f"per-user limit: {mine} of {config.per_user} running")
            return
        agent = ctx.task.agent_type
        limit = config.per_agent_type.get(agent) if agent else None
        if agent is not None and limit is not None:
            theirs = counts.by_agent.get(agent, 0)
            if theirs >= limit:
                self.delay(ctx, f"{agent} limit: {theirs} of {limit} running")
                return
        # The last guard said yes: this start happens, so it counts from now on.
        counts.total += 1
        counts.by_user[user] = mine + 1
        if agent is not None:
            counts.by_agent[agent] = counts.by_agent.get(agent, 0) + 1
