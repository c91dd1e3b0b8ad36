"""The building blocks of the rules engine: rules, their context, and policies.

A rule is a small class that names the transitions it guards (`FROM` and `TO`
status sets). There are two kinds:

- a `TaskRule` decides: before the transition it may accept it (do nothing),
  reject it, delay it, or rewrite it (another target status, or other field
  values), each decision recorded as a `rule.decision` event; after the
  transition it may react (append events, propose follow-up transitions, create
  tasks, schedule side effects);
- a `BookkeepingRule` keeps records and decides nothing: leases, the work queue,
  usage roll-up, status events, metrics.

A task's creation is a transition too, from nothing (`None`) to `pending`: the
rules whose `FROM` holds `None` see it. A policy is an ordered list of rules;
for each (from, to) pair it knows which rules apply, once.
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

Source = TaskStatus | None
"""Where a transition starts: a status, or None for a task being created."""

ALL_STATUSES: frozenset[Source] = frozenset(TaskStatus)
CREATION: frozenset[Source] = frozenset({None})
"""The `FROM` of a rule that sees tasks being created."""


class Decision(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    DELAY = "delay"
    REWRITE = "rewrite"


@dataclass(slots=True)
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
    new: Task | None = None
    """The task to create (the transition from nothing to `pending`); None for a change."""
    creates: list[Task] = field(default_factory=list)
    """Tasks created just before this transition, if its expectations hold (a plan's
    subtasks, created with the transition that delegates their root)."""
    then: list[TransitionRequest] = field(default_factory=list)
    """Transitions to run next in the same transaction, only if this one is accepted."""

    @classmethod
    def create(cls, task: Task, reason: str = "") -> TransitionRequest:
        return cls(task.id, TaskStatus.PENDING, reason=reason, new=task)


class Tree:
    """Every task of one root task, loaded (and locked) once per transaction.

    Rules read siblings, parents and children from here instead of querying, and
    every change and creation goes through it, so later rules in the same
    transaction see them; the engine writes what changed when the transaction ends.
    """

    __slots__ = ("_kids", "_place", "created", "root", "stored", "tasks")

    def __init__(self, tasks: Iterable[Task]) -> None:
        self.tasks: dict[UUID, Task] = {t.id: t for t in tasks}
        self.stored: dict[UUID, Task] = dict(self.tasks)
        """Each task as it is in the database: what `changes()` compares against."""
        self.created: dict[UUID, None] = {}
        """Tasks created in this transaction, in creation order (inserted, not updated)."""
        roots = [t for t in self.tasks.values() if t.parent_id is None]
        if len(roots) != 1:
            raise ValueError("a tree has exactly one root")
        self.root = roots[0]
        self._kids: dict[UUID, list[Task]] = {}
        """Parent id -> its children in creation order (kept current by `put`)."""
        self._place: dict[UUID, int] = {}
        """Child id -> its index in its parent's list."""
        for t in sorted(self.tasks.values(), key=_creation_order):
            if t.parent_id is not None:
                self._append_child(t)

    def _append_child(self, task: Task) -> None:
        assert task.parent_id is not None
        siblings = self._kids.setdefault(task.parent_id, [])
        self._place[task.id] = len(siblings)
        siblings.append(task)

    def get(self, task_id: UUID) -> Task:
        return self.tasks[task_id]

    def put(self, task: Task) -> None:
        """Change a task; the change is written when the transaction ends."""
        self.tasks[task.id] = task
        if task.parent_id is None:
            self.root = task
        else:
            self._kids[task.parent_id][self._place[task.id]] = task

    def add(self, task: Task) -> None:
        """A task created in this transaction: inserted when the transaction ends."""
        if task.id in self.tasks:
            self.put(task)
            return
        self.created[task.id] = None
        self.tasks[task.id] = task
        if task.parent_id is None:
            self.root = task
            return
        siblings = self._kids.get(task.parent_id, [])
        if siblings and _creation_order(task) < _creation_order(siblings[-1]):
            self._reindex(task.parent_id, [*siblings, task])
        else:
            self._append_child(task)

    def discard(self, task_id: UUID) -> None:
        """Forget a task created in this transaction (its creation was refused)."""
        if task_id not in self.created:
            return
        task = self.tasks.pop(task_id)
        del self.created[task_id]
        if task.parent_id is not None:
            siblings = self._kids[task.parent_id]
            self._reindex(task.parent_id, [t for t in siblings if t.id != task_id])
            del self._place[task_id]

    def _reindex(self, parent_id: UUID, children: list[Task]) -> None:
        children.sort(key=_creation_order)
        self._kids[parent_id] = children
        for index, child in enumerate(children):
            self._place[child.id] = index

    def changes(self) -> list[tuple[Task, Task]]:
        """(as stored, as now) for every stored task changed in this transaction."""
        return [
            (before, task)
            for task_id, before in self.stored.items()
            if (task := self.tasks[task_id]) is not before
        ]

    def fingerprint(self) -> tuple[int, int]:
        """(tasks, sum of their versions), as `TaskRepository.lock_trees` reads it."""
        return len(self.stored), sum(t.version for t in self.stored.values())

    def new_tasks(self) -> list[Task]:
        """The tasks created in this transaction, in creation order."""
        return [self.tasks[task_id] for task_id in self.created]

    def mark_written(self) -> None:
        self.stored = dict(self.tasks)
        self.created = {}

    def children(self, parent_id: UUID) -> list[Task]:
        """The children of `parent_id` in creation order (a list the caller must not change)."""
        return self._kids.get(parent_id, _NO_CHILDREN)

    def parent(self, task: Task) -> Task | None:
        return self.tasks.get(task.parent_id) if task.parent_id else None

    def has_children(self, task_id: UUID) -> bool:
        return bool(self._kids.get(task_id))


_NO_CHILDREN: list[Task] = []


def _creation_order(task: Task) -> tuple[datetime, str]:
    return task.created_at, task.key or ""


AfterCommit = Callable[[], Awaitable[None] | None]


@dataclass(slots=True)
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


@dataclass(slots=True)
class TransitionContext:
    """Everything a rule may read about one proposed transition, and the ways to act on it."""

    tx: UnitOfWork
    tree: Tree
    task: Task
    """The task as it is before the transition (for a creation: as it will be inserted)."""
    requested: TaskStatus
    """The status the caller asked for."""
    proposed: TaskStatus
    """The status the transition will go to (rules may rewrite it)."""
    config: TeamLeaderConfig
    now: datetime
    outbox: Outbox
    """The transaction's side effects (shared by every transition in it)."""
    events: list[NewEvent]
    """The events this transition appends (in order, after those of earlier transitions)."""
    event_mark: int = 0
    """Where this transition's own events start in `events`."""
    creating: bool = False
    """The task does not exist yet: this is its creation."""
    reason: str = ""
    updates: dict[str, Any] = field(default_factory=dict)
    event_data: dict[str, Any] = field(default_factory=dict)
    decision: Decision = Decision.ACCEPT
    decision_reason: str | None = None
    decided_by: str | None = None
    delay_until: datetime | None = None
    updated: Task | None = None
    """The task after the transition (set before `after_transition` runs)."""
    cascade: list[TransitionRequest] = field(default_factory=list)
    """Follow-up transitions, run in the same database transaction."""
    rewrites: int = 0

    @property
    def from_status(self) -> Source:
        return None if self.creating else self.task.status

    @property
    def own_events(self) -> list[NewEvent]:
        """The events this transition has appended so far."""
        return self.events[self.event_mark :]

    @property
    def settled(self) -> bool:
        """A rule rejected or delayed the transition: later rules do not run."""
        return self.decision is Decision.REJECT or self.decision is Decision.DELAY

    def emit(self, type: EventType, **data: Any) -> None:
        # Built without validation: the fields are ours and of the right types.
        self.events.append(
            NewEvent.model_construct(
                type=type,
                subtask_id=None if self.task.parent_id is None else self.task.id,
                data=data,
            )
        )

    def create(self, task: Task, reason: str = "") -> None:
        """Create `task` in this tree: rules see it at once; its creation is a transition
        of its own (it gets its `task.created` event), run next in this transaction."""
        self.tree.add(task)
        self.cascade.append(TransitionRequest.create(task, reason))

    def update(self, task: Task, **fields: Any) -> None:
        """Change fields of another task of the tree (not its status), as every update is
        written: a new version, `updated_at` now."""
        self.tree.put(
            task.model_copy(update={**fields, "version": task.version + 1, "updated_at": self.now})
        )


class Rule:
    """A rule guarding the transitions from a status in `FROM` to a status in `TO`."""

    FROM: ClassVar[frozenset[Source]] = ALL_STATUSES
    TO: ClassVar[frozenset[TaskStatus]] = frozenset(TaskStatus)

    @property
    def name(self) -> str:
        return type(self).__name__

    def applies(self, from_status: Source, to_status: TaskStatus) -> bool:
        return from_status in self.FROM and to_status in self.TO

    async def before_transition(self, ctx: TransitionContext) -> None:
        """Inspect the proposed transition before it happens."""

    async def after_transition(self, ctx: TransitionContext) -> None:
        """React to a transition that was accepted and written."""

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "bookkeeping" if isinstance(self, BookkeepingRule) else "decides",
            "description": (type(self).__doc__ or "").strip().split("\n\n")[0],
            "from": sorted(s for s in self.FROM if s is not None),
            "to": sorted(self.TO),
            "on_create": None in self.FROM,
        }


class TaskRule(Rule):
    """A rule that decides: it may reject, delay or rewrite a transition."""

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


class BookkeepingRule(Rule):
    """A rule that keeps records (leases, the queue, usage, events, metrics): it never
    changes the outcome, and writes only the bookkeeping fields it owns."""

    def write(self, ctx: TransitionContext, **fields: Any) -> None:
        """Set bookkeeping fields written with the transition."""
        ctx.updates.update(fields)


class Policy:
    """An ordered list of rules: guards first, reactions next, bookkeeping last."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = list(rules)
        self._table: dict[tuple[Source, TaskStatus], tuple[Rule, ...]] = {}
        """The rules of each (from, to) pair, in policy order: worked out once."""
        self._before: dict[tuple[Source, TaskStatus], tuple[Rule, ...]] = {}
        self._after: dict[tuple[Source, TaskStatus], tuple[Rule, ...]] = {}

    def for_transition(self, from_status: Source, to_status: TaskStatus) -> tuple[Rule, ...]:
        key = (from_status, to_status)
        rules = self._table.get(key)
        if rules is None:
            rules = tuple(r for r in self.rules if r.applies(from_status, to_status))
            self._table[key] = rules
        return rules

    def checks(self, from_status: Source, to_status: TaskStatus) -> tuple[Rule, ...]:
        """The rules of the pair that look at a transition before it happens."""
        return self._implementing("before_transition", self._before, from_status, to_status)

    def reactions(self, from_status: Source, to_status: TaskStatus) -> tuple[Rule, ...]:
        """The rules of the pair that react to a transition that happened."""
        return self._implementing("after_transition", self._after, from_status, to_status)

    def _implementing(
        self,
        hook: str,
        table: dict[tuple[Source, TaskStatus], tuple[Rule, ...]],
        from_status: Source,
        to_status: TaskStatus,
    ) -> tuple[Rule, ...]:
        """The rules of the pair whose class implements `hook` (others have nothing to do)."""
        key = (from_status, to_status)
        rules = table.get(key)
        if rules is None:
            rules = tuple(
                r
                for r in self.for_transition(from_status, to_status)
                if getattr(type(r), hook) is not getattr(Rule, hook)
            )
            table[key] = rules
        return rules

    def without(self, rule_type: type[Rule]) -> Policy:
        """The same policy minus one rule (tests show each rule is needed)."""
        return Policy(rule for rule in self.rules if not isinstance(rule, rule_type))

    def describe(self) -> list[dict[str, Any]]:
        return [rule.describe() for rule in self.rules]
