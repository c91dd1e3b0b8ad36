"""The building blocks of the rules engine: rules, their context, and policies.

A rule is a small class that names the transitions it guards (`FROM` and `TO`
status sets) and may, before the transition, accept it (do nothing), reject it,
delay it, or rewrite it (another target status, or other field values); after
the transition it may react (append events, schedule side effects, propose
follow-up transitions). A policy is an ordered list of rules; instrumentation
rules sit at its end.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

from devteam.domain.enums import TaskStatus
from devteam.domain.events import EventType, NewEvent
from devteam.domain.tasks import Task
from devteam.settings.team_leader import TeamLeaderConfig

if TYPE_CHECKING:
    from devteam.storage import UnitOfWork

ALL_STATUSES = frozenset(TaskStatus)
ACTIVE_STATUSES = frozenset(
    {
        TaskStatus.PENDING,
        TaskStatus.PLANNING,
        TaskStatus.AWAITING_APPROVAL,
        TaskStatus.DELEGATED,
        TaskStatus.IN_PROGRESS,
        TaskStatus.CANCELLING,
    }
)


class Decision(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    DELAY = "delay"
    REWRITE = "rewrite"


@dataclass
class TransitionRequest:
    """A proposed status change, with the fields to write alongside it."""

    task_id: UUID
    to: TaskStatus
    reason: str = ""
    updates: dict[str, Any] = field(default_factory=dict)
    """Column values to set with the change (error, result, usage, lease, ...)."""
    event_data: dict[str, Any] = field(default_factory=dict)
    """Extra data for the status event."""
    expect_attempt: int | None = None
    """Only if the task is still at this attempt (a work item for an older one is stale)."""
    expect_lease_owner: str | None = None
    """Only if this owner still holds the lease, in `expect_status` (a take-over happens once)."""
    expect_status: TaskStatus | None = None
    events_before: list[NewEvent] = field(default_factory=list)
    """Events to record just before this transition's own (e.g. `task.planned`)."""


class Tree:
    """Every task of one root task, loaded (and locked) once per transaction.

    Rules read siblings, parents and children from here instead of querying,
    and the engine writes every change through, so later rules in the same
    transaction see it.
    """

    def __init__(self, tasks: Iterable[Task]) -> None:
        self.tasks: dict[UUID, Task] = {t.id: t for t in tasks}
        self.stored: dict[UUID, Task] = dict(self.tasks)
        """Each task as it is in the database: what `changes()` compares against."""
        roots = [t for t in self.tasks.values() if t.parent_id is None]
        if len(roots) != 1:
            raise ValueError("a tree has exactly one root")
        self.root = roots[0]
        self._children: dict[UUID, list[UUID]] | None = None
        """Parent id -> its children's ids in creation order; built on first use."""

    def get(self, task_id: UUID) -> Task:
        return self.tasks[task_id]

    def put(self, task: Task) -> None:
        """Change a task; the change is written when the transaction ends."""
        if task.id not in self.tasks:
            self._children = None
        self.tasks[task.id] = task
        if task.parent_id is None:
            self.root = task

    def add(self, task: Task) -> None:
        """A task just inserted into the database in this transaction."""
        self.put(task)
        self.stored[task.id] = task

    def changes(self) -> list[tuple[Task, Task]]:
        """(as stored, as now) for every task changed in this transaction."""
        return [
            (self.stored[task_id], task)
            for task_id, task in self.tasks.items()
            if task is not self.stored[task_id]
        ]

    def mark_written(self) -> None:
        self.stored = dict(self.tasks)

    def children(self, parent_id: UUID) -> list[Task]:
        return [self.tasks[i] for i in self._index().get(parent_id, ())]

    def _index(self) -> dict[UUID, list[UUID]]:
        # A task's parent and creation time never change: only a new task resets this.
        if self._children is None:
            index: dict[UUID, list[UUID]] = {}
            for t in sorted(self.tasks.values(), key=lambda t: (t.created_at, t.key or "")):
                if t.parent_id is not None:
                    index.setdefault(t.parent_id, []).append(t.id)
            self._children = index
        return self._children

    def parent(self, task: Task) -> Task | None:
        return self.tasks.get(task.parent_id) if task.parent_id else None

    def has_children(self, task_id: UUID) -> bool:
        return bool(self._index().get(task_id))


AfterCommit = Callable[[], Awaitable[None] | None]


@dataclass
class Outbox:
    """Side effects of one database transaction, carried out together after it commits."""

    enqueue: list[Task] = field(default_factory=list)
    """Tasks to put on the work queue now (planning of a root, or an agent attempt)."""
    enqueue_at: list[tuple[Task, datetime]] = field(default_factory=list)
    """Tasks to put on the work queue later (retry back-off)."""
    cancel: list[UUID] = field(default_factory=list)
    """Running attempts to stop, wherever they run."""
    capacity_freed: bool = False
    """A running attempt ended: waiting work may start now."""
    callbacks: list[AfterCommit] = field(default_factory=list)
    """Anything else (metrics): run after commit so a rolled-back change counts nothing."""

    def merge(self, other: Outbox) -> None:
        self.enqueue += other.enqueue
        self.enqueue_at += other.enqueue_at
        self.cancel += other.cancel
        self.capacity_freed = self.capacity_freed or other.capacity_freed
        self.callbacks += other.callbacks


@dataclass
class TransitionContext:
    """Everything a rule may read or change about one proposed transition."""

    tx: UnitOfWork
    tree: Tree
    task: Task
    """The task as it is before the transition."""
    requested: TaskStatus
    """The status the caller asked for."""
    proposed: TaskStatus
    """The status the transition will go to (rules may rewrite it)."""
    config: TeamLeaderConfig
    now: datetime
    reason: str = ""
    updates: dict[str, Any] = field(default_factory=dict)
    event_data: dict[str, Any] = field(default_factory=dict)
    decision: Decision = Decision.ACCEPT
    decision_reason: str | None = None
    decided_by: str | None = None
    delay_until: datetime | None = None
    updated: Task | None = None
    """The task after the transition (set before `after_transition` runs)."""
    events: list[NewEvent] = field(default_factory=list)
    cascade: list[TransitionRequest] = field(default_factory=list)
    """Follow-up transitions, run in the same database transaction."""
    outbox: Outbox = field(default_factory=Outbox)
    rewrites: int = 0

    @property
    def from_status(self) -> TaskStatus:
        return self.task.status

    @property
    def settled(self) -> bool:
        """A rule rejected or delayed the transition: later rules do not run."""
        return self.decision in (Decision.REJECT, Decision.DELAY)

    def emit(self, type: EventType, **data: Any) -> None:
        self.events.append(
            NewEvent(
                type=type,
                subtask_id=None if self.task.parent_id is None else self.task.id,
                data=data,
            )
        )


class TaskRule:
    """A rule guarding the transitions from a status in `FROM` to a status in `TO`."""

    FROM: ClassVar[frozenset[TaskStatus]] = ALL_STATUSES
    TO: ClassVar[frozenset[TaskStatus]] = ALL_STATUSES

    @property
    def name(self) -> str:
        return type(self).__name__

    def applies(self, from_status: TaskStatus, to_status: TaskStatus) -> bool:
        return from_status in self.FROM and to_status in self.TO

    async def before_transition(self, ctx: TransitionContext) -> None:
        """Inspect the proposed transition; call reject, delay or rewrite to change it."""

    async def after_transition(self, ctx: TransitionContext) -> None:
        """React to a transition that was accepted and written."""

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": (type(self).__doc__ or "").strip().split("\n\n")[0],
            "from": sorted(self.FROM),
            "to": sorted(self.TO),
        }

    # -- decisions -----------------------------------------------------------------

    def _record(self, ctx: TransitionContext, decision: Decision, reason: str) -> None:
        ctx.decision = decision
        ctx.decision_reason = reason
        ctx.decided_by = self.name
        ctx.emit(
            EventType.RULE_DECISION,
            rule=self.name,
            decision=decision.value,
            reason=reason,
            transition=f"{ctx.from_status} => {ctx.proposed}",
        )

    def reject(self, ctx: TransitionContext, reason: str) -> None:
        self._record(ctx, Decision.REJECT, reason)

    def delay(self, ctx: TransitionContext, reason: str, until: datetime | None = None) -> None:
        """Not now: until `until`, or until a condition changes (the engine retries)."""
        ctx.delay_until = until
        self._record(ctx, Decision.DELAY, reason)

    def rewrite(
        self,
        ctx: TransitionContext,
        reason: str,
        *,
        to: TaskStatus | None = None,
        **updates: Any,
    ) -> None:
        """Change the target status and/or the values written with the transition."""
        self._record(ctx, Decision.REWRITE, reason)
        ctx.decision = Decision.ACCEPT
        ctx.updates.update(updates)
        if to is not None and to != ctx.proposed:
            ctx.proposed = to
            ctx.rewrites += 1


class Policy:
    """An ordered list of rules: guards first, reactions next, instrumentation last."""

    def __init__(self, rules: Iterable[TaskRule]) -> None:
        self.rules = list(rules)

    def for_transition(self, from_status: TaskStatus, to_status: TaskStatus) -> list[TaskRule]:
        return [rule for rule in self.rules if rule.applies(from_status, to_status)]

    def without(self, rule_type: type[TaskRule]) -> Policy:
        """The same policy minus one rule (tests show each rule is needed)."""
        return Policy(rule for rule in self.rules if not isinstance(rule, rule_type))

    def describe(self) -> list[dict[str, Any]]:
        return [rule.describe() for rule in self.rules]
