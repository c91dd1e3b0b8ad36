"""The rules engine, and the only writer of task rows.

Every status change of every task goes through `Engine.transition_many`, and so
does every task's creation (a transition from nothing to `pending`). One
database transaction per call: the trees of the tasks concerned are loaded and
locked, the policy's rules run before each change (and may reject, delay or
rewrite it), the change is applied to the tree, the rules run after it (events,
follow-up transitions, new tasks, side effects), follow-up transitions run in
the same transaction, then every change and new task is written and the events
are appended. Only after the commit are events published and side effects
(queueing work, stopping agents) carried out, so nothing is announced that did
not happen.

Beside status changes the engine writes two kinds of bookkeeping: lease renewals
(`renew_leases`) and a root task's creation in one statement (`create_root`).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from devteam.domain.audit import NewAuditEntry
from devteam.domain.enums import TERMINAL_STATUSES, AgentType, Phase, TaskStatus
from devteam.domain.errors import NotFound
from devteam.domain.events import Event, EventType, NewEvent
from devteam.domain.tasks import Task, TaskError, Usage
from devteam.observability.logging import get_logger
from devteam.orchestration.clock import Clock
from devteam.orchestration.rules.base import (
    Decision,
    Outbox,
    Policy,
    TransitionContext,
    TransitionRequest,
    Tree,
)
from devteam.settings.team_leader import TeamLeaderConfig
from devteam.storage import Store, UnitOfWork

log = get_logger(__name__)

MAX_REWRITES = 5
MAX_CASCADE = 2_000
CREATION_BATCH = 200
"""Roots written in one creating transaction at most."""
TREES_KEPT = 2_000
"""Trees of unfinished roots held in memory between transactions (least recently used go)."""


@dataclass(frozen=True, slots=True)
class TransitionResult:
    task: Task
    """The task after the call (unchanged when the transition did not happen)."""
    decision: Decision
    requested: TaskStatus
    reason: str | None = None
    rule: str | None = None
    delay_until: datetime | None = None
    tree: Tree | None = field(default=None, compare=False, repr=False)

    @property
    def accepted(self) -> bool:
        return self.decision == Decision.ACCEPT

    @property
    def status(self) -> TaskStatus:
        return self.task.status


@dataclass(slots=True)
class _Creation:
    root: Task
    audit: NewAuditEntry | None
    done: asyncio.Future[tuple[Task, list[Event]]]


def _settle(
    done: asyncio.Future[tuple[Task, list[Event]]],
    *,
    result: tuple[Task, list[Event]] | None = None,
    error: BaseException | None = None,
) -> None:
    if done.done():
        return
    if error is not None:
        done.set_exception(error)
    elif result is not None:
        done.set_result(result)


class LocalRunner(Protocol):
    """An executor in this process that takes ready work straight from the transaction that
    makes it ready: started there, no queue hop, no transaction of its own."""

    owner: str

    def claimable(self) -> int:
        """How many more attempts it would start now (0 while work waits on the queue)."""
        ...

    def lease_until(self) -> datetime: ...

    def reserve(self, count: int) -> None:
        """Hold `count` slots for attempts about to be started in a transaction."""

    def release(self, count: int) -> None:
        """Give back reserved slots (the transaction did not commit)."""

    def run_here(self, started: list[tuple[Task, Tree]], reserved: int) -> None:
        """Run the attempts the committed transaction started; `reserved` slots are used."""


class Effects(Protocol):
    """Where committed changes go: event subscribers and the work queue."""

    async def publish(self, events: dict[UUID, list[Event]]) -> None: ...

    async def flush(self, outbox: Outbox) -> None: ...


Finish = Callable[[UnitOfWork, list[TransitionResult]], Awaitable[None]]
"""Work done in the transaction after the transitions, seeing their results (e.g. an
audit entry that must commit with them)."""

Within = Callable[[UnitOfWork, Task], Awaitable[None]]
"""Work done in the transaction that creates a root task (e.g. its Idempotency-Key)."""


class Engine:
    def __init__(
        self,
        store: Store,
        policy: Policy,
        config: Callable[[], TeamLeaderConfig],
        clock: Clock,
        effects: Effects,
    ) -> None:
        self.store = store
        self.policy = policy
        self.config = config
        self.clock = clock
        self.effects = effects
        if hasattr(effects, "engine"):
            effects.engine = self
        self.local_runners: list[LocalRunner] = []
        """Executors of this process, which start ready work in the transaction that makes
        it ready when they have room."""
        self._creations: list[_Creation] = []
        """Roots waiting to be created (see `create_root`)."""
        self._creating: asyncio.Task[None] | None = None
        self._trees: OrderedDict[UUID, Tree] = OrderedDict()
        """Trees as this process last committed them (see `_load_trees`)."""
        # Last delay reason per task: a delay repeated for the same reason is not
        # recorded again, so retries of a waiting start do not flood the history.
        self._last_delay: OrderedDict[UUID, str] = OrderedDict()

    # -- status changes --------------------------------------------------------------

    async def transition(
        self,
        task_id: UUID,
        to: TaskStatus,
        *,
        reason: str = "",
        root_id: UUID | None = None,
        **updates: Any,
    ) -> TransitionResult:
        """Propose moving `task_id` to `to`; the policy decides what happens."""
        request = TransitionRequest(task_id, to, reason=reason, updates=updates)
        (result,) = await self.transition_many([request], root_ids=[root_id] if root_id else None)
        return result

    async def transition_many(
        self,
        requests: Sequence[TransitionRequest],
        *,
        root_ids: Sequence[UUID] | None = None,
        finish: Finish | None = None,
    ) -> list[TransitionResult]:
        """Run several transitions (of one or several trees) in one transaction.

        `root_ids`, when given, are the roots of the tasks in `requests` (saves a
        lookup; a creation names its root itself). `finish` runs last inside the
        transaction with the results of `requests`.
        """
        outbox = Outbox()
        appended: dict[UUID, list[Event]] = {}
        runner, reserved = self._runner(), 0
        started: list[tuple[Task, Tree]] = []
        try:
            async with self.store.transaction() as tx:
                roots = await self._roots_of(tx, requests, root_ids)
                trees = await self._load_trees(tx, roots)
                events: dict[UUID, list[NewEvent]] = defaultdict(list)
                config = self.config()
                results = []
                for root, request in zip(roots, requests, strict=True):
                    tree = trees.get(root)
                    if tree is None or (request.new is None and request.task_id not in tree.tasks):
                        raise NotFound(f"task {request.task_id} does not exist")
                    results.append(await self._run(tx, tree, request, config, outbox, events[root]))
                if runner is not None and outbox.enqueue:
                    reserved = min(runner.claimable(), len(outbox.enqueue))
                    if reserved > 0:
                        runner.reserve(reserved)
                        started = await self._start_here(
                            tx, runner, reserved, trees, config, outbox, events
                        )
                if finish is not None:
                    await finish(tx, results)
                created, changes = self._written(trees.values())
                appended = await tx.events.append_many(events, created=created, changes=changes)
        except BaseException:
            if runner is not None and reserved:
                runner.release(reserved)
            raise
        if runner is not None and reserved:
            runner.run_here(started, reserved)
        if appended:
            await self.effects.publish(appended)
        await self.effects.flush(outbox)
        # Kept only now: until the caller has read its results, nothing else takes them.
        self._keep(trees)
        return results

    async def create_root(
        self,
        root: Task,
        *,
        audit: NewAuditEntry | None = None,
        within: Within | None = None,
    ) -> tuple[Task, list[Event]]:
        """Create a root task: its transition from nothing to `pending`, through the policy.

        Written with its first events and `audit` (the entry of its creation). Roots
        created at the same moment are written together (on Postgres in one statement,
        one round trip); with `within`, which runs in the creating transaction, a root is
        written by itself. A caller that gives up waiting leaves its root to be written.
        """
        if within is not None:
            ((created, appended),) = await self._create([(root, audit)], within)
            return created, appended
        pending = _Creation(root, audit, asyncio.get_running_loop().create_future())
        self._creations.append(pending)
        if self._creating is None or self._creating.done():
            self._creating = asyncio.create_task(self._create_waiting(), name="create-roots")
        # Cancelling the wait cancels `done` only: the batch settles the others.
        return await pending.done

    async def _create_waiting(self) -> None:
        """Write the roots waiting to be created, as many as arrived, batch after batch."""
        while self._creations:
            batch = self._creations[:CREATION_BATCH]
            del self._creations[: len(batch)]
            try:
                results = await self._create([(c.root, c.audit) for c in batch])
            except Exception as exc:
                if len(batch) == 1:
                    _settle(batch[0].done, error=exc)
                    continue
                # One bad root must not sink the others: write them one by one.
                for creation in batch:
                    try:
                        (result,) = await self._create([(creation.root, creation.audit)])
                    except Exception as one:
                        _settle(creation.done, error=one)
                    else:
                        _settle(creation.done, result=result)
                continue
            for creation, result in zip(batch, results, strict=True):
                _settle(creation.done, result=result)

    async def _create(
        self,
        roots: Sequence[tuple[Task, NewAuditEntry | None]],
        within: Within | None = None,
    ) -> list[tuple[Task, list[Event]]]:
        outbox = Outbox()
        one_statement = within is None
        session: AbstractAsyncContextManager[UnitOfWork] = (
            self.store.write_statement() if one_statement else self.store.transaction()
        )
        made: list[tuple[Tree, list[NewEvent], NewAuditEntry | None]] = []
        async with session as tx:
            config = self.config()
            for root, audit in roots:
                tree = Tree([root])
                tree.created[root.id] = None
                events: list[NewEvent] = []
                result = await self._run(
                    tx, tree, TransitionRequest.create(root), config, outbox, events
                )
                if not result.accepted:
                    raise RuntimeError(f"the rules refused to create a task: {result.reason}")
                if tree.changes() or len(tree.created) != 1:
                    raise RuntimeError("creating a root task may not change or create other tasks")
                made.append((tree, events, audit))
            appended = await tx.events.insert_roots(
                [(tree.root, events, audit) for tree, events, audit in made]
            )
            if within is not None:
                await within(tx, made[0][0].root)
        for tree, _, _ in made:
            tree.mark_written()
        await self.effects.publish(
            {tree.root.id: events for (tree, _, _), events in zip(made, appended, strict=True)}
        )
        await self.effects.flush(outbox)
        self._keep({tree.root.id: tree for tree, _, _ in made})
        return [(tree.root, events) for (tree, _, _), events in zip(made, appended, strict=True)]

    async def requeue(self, tasks: Iterable[Task]) -> list[TransitionResult]:
        """Put delegated work back on the queue (a retry whose back-off ended, work lost with
        an in-process queue): a move from `delegated` to itself, which the queue rule sees."""
        requests = [
            TransitionRequest(
                t.id, TaskStatus.DELEGATED, reason="back on the queue", expect_status=t.status
            )
            for t in tasks
        ]
        if not requests:
            return []
        roots = [t.root_id for t in tasks]
        return await self.transition_many(requests, root_ids=roots)

    async def renew_leases(
        self, owner: str, task_ids: Sequence[UUID], until: datetime
    ) -> set[UUID]:
        """Extend the leases `owner` still holds; returns the ids it still holds."""
        if not task_ids:
            return set()
        async with self.store.transaction() as tx:
            return await tx.tasks.renew_leases(owner, task_ids, until)

    async def append_events(self, root_id: UUID, new: Sequence[NewEvent]) -> list[Event]:
        """Events that are not status changes (progress, tool calls)."""
        async with self.store.transaction() as tx:
            appended = await tx.events.append(root_id, new)
        await self.effects.publish({root_id: appended})
        return appended

    # -- inside the transaction --------------------------------------------------------

    @staticmethod
    async def _roots_of(
        tx: UnitOfWork, requests: Sequence[TransitionRequest], root_ids: Sequence[UUID] | None
    ) -> list[UUID]:
        if root_ids is not None and len(root_ids) == len(requests):
            return list(root_ids)
        lookup = [r.task_id for r in requests if r.new is None]
        known = await tx.tasks.root_ids(lookup) if lookup else {}
        roots = []
        for request in requests:
            if request.new is not None:
                roots.append(request.new.root_id)
            elif request.task_id in known:
                roots.append(known[request.task_id])
            else:
                raise NotFound(f"task {request.task_id} does not exist")
        return roots

    async def _load_trees(self, tx: UnitOfWork, roots: Sequence[UUID]) -> dict[UUID, Tree]:
        """The trees of `roots`, locked: from memory when the database holds them as they
        are there (a fingerprint checks it), else read."""
        fingerprints = await tx.tasks.lock_trees(roots)
        trees: dict[UUID, Tree] = {}
        stale: list[UUID] = []
        for root in fingerprints:
            # Taken out while this transaction uses it: nothing else may change it meanwhile.
            tree = self._trees.pop(root, None)
            if tree is not None and tree.fingerprint() == fingerprints[root]:
                trees[root] = tree
            else:
                stale.append(root)
        if stale:
            for root, rows in (await tx.tasks.load_trees(stale, for_update=False)).items():
                trees[root] = Tree(rows)
        return trees

    def _keep(self, trees: dict[UUID, Tree]) -> None:
        """Hold the trees of a committed transaction for the next one, unless finished.

        A process without executors of its own (an API replica beside workers) runs no
        next transaction of these trees soon: it keeps none."""
        if not self.local_runners:
            return
        for root, tree in trees.items():
            if tree.root.status in TERMINAL_STATUSES:
                continue
            self._trees[root] = tree
            self._trees.move_to_end(root)
        while len(self._trees) > TREES_KEPT:
            self._trees.popitem(last=False)

    def _runner(self) -> LocalRunner | None:
        for runner in self.local_runners:
            if runner.claimable() > 0:
                return runner
        return None

    async def _start_here(
        self,
        tx: UnitOfWork,
        runner: LocalRunner,
        slots: int,
        trees: dict[UUID, Tree],
        config: TeamLeaderConfig,
        outbox: Outbox,
        events: dict[UUID, list[NewEvent]],
    ) -> list[tuple[Task, Tree]]:
        """Start, in this transaction, the work it made ready, up to `slots` attempts, most
        urgent first: each start is a transition through the policy like any other (the
        concurrency limits may delay it; it then stays on its way to the queue)."""
        ready = sorted(
            (
                task
                for task in outbox.enqueue
                if task.status == TaskStatus.DELEGATED and task.root_id in trees
            ),
            key=lambda t: (-t.priority, t.created_at),
        )
        lease = {"lease_owner": runner.owner, "lease_expires_at": runner.lease_until()}
        started: list[tuple[Task, Tree]] = []
        for task in ready:
            if len(started) == slots:
                break
            tree = trees[task.root_id]
            current = tree.tasks[task.id]
            if current.status != TaskStatus.DELEGATED or current.queued_at is None:
                continue
            request = TransitionRequest(
                task.id, TaskStatus.IN_PROGRESS, updates=dict(lease), expect_attempt=task.attempt
            )
            result = await self._run(tx, tree, request, config, outbox, events[task.root_id])
            if result.accepted and result.task.status == TaskStatus.IN_PROGRESS:
                started.append((result.task, tree))
        if started:
            ids = {task.id for task, _ in started}
            outbox.enqueue = [t for t in outbox.enqueue if t.id not in ids]
        return started

    @staticmethod
    def _written(trees: Iterable[Tree]) -> tuple[list[Task], list[tuple[Task, Task]]]:
        """Every change of the transaction, to be written once, with its events (in one
        statement on Postgres): the new tasks and the (as stored, as now) pairs. The trees
        were locked, so nothing else changed these rows."""
        new: list[Task] = []
        changes: list[tuple[Task, Task]] = []
        for tree in trees:
            new += tree.new_tasks()
            changes += tree.changes()
            tree.mark_written()
        return new, changes

    async def _run(
        self,
        tx: UnitOfWork,
        tree: Tree,
        request: TransitionRequest,
        config: TeamLeaderConfig,
        outbox: Outbox,
        events: list[NewEvent],
    ) -> TransitionResult:
        """One request and every follow-up transition it causes."""
        queue: deque[TransitionRequest] = deque([request])
        first: TransitionResult | None = None
        done = 0
        while queue:
            done += 1
            if done > MAX_CASCADE:
                raise RuntimeError("transition cascade does not end")
            current = queue.popleft()
            if (
                current.creates
                and current.task_id in tree.tasks
                and not self._stale(current, tree.tasks[current.task_id])
            ):
                # The new tasks first, each created through the policy; then this.
                creations = [TransitionRequest.create(t) for t in current.creates]
                events.extend(current.events_before)
                then = replace(current, creates=[], events_before=[])
                if current is request:
                    request = then
                queue.extendleft(reversed([*creations, then]))
                continue
            if current.new is None and current.task_id not in tree.tasks:
                if current is request:
                    raise NotFound(f"task {current.task_id} does not exist")
                continue  # a follow-up of a creation the rules refused
            events.extend(current.events_before)
            ctx = await self._evaluate(tx, tree, current, config, outbox, events)
            if current is request:
                first = TransitionResult(
                    task=ctx.updated or ctx.task,
                    decision=ctx.decision,
                    requested=current.to,
                    reason=ctx.decision_reason,
                    rule=ctx.decided_by,
                    delay_until=ctx.delay_until,
                    tree=tree,
                )
            queue.extend(ctx.cascade)
            if ctx.decision is Decision.ACCEPT:
                queue.extend(current.then)
        assert first is not None
        return first

    async def _evaluate(
        self,
        tx: UnitOfWork,
        tree: Tree,
        request: TransitionRequest,
        config: TeamLeaderConfig,
        outbox: Outbox,
        events: list[NewEvent],
    ) -> TransitionContext:
        creating = request.new is not None
        if request.new is not None and request.new.id not in tree.tasks:
            tree.add(request.new)
        task = tree.tasks[request.task_id]
        mark = len(events)
        ctx = TransitionContext(
            tx=tx,
            tree=tree,
            task=task,
            requested=request.to,
            proposed=request.to,
            config=config,
            now=self.clock.now(),
            outbox=outbox,
            events=events,
            event_mark=mark,
            creating=creating,
            reason=request.reason,
            updates=dict(request.updates),
            event_data=request.event_data,
        )
        if stale := self._stale(request, task):
            # A work item of an earlier attempt, or a lease taken over already:
            # nothing to decide, nothing to record.
            ctx.decision = Decision.REJECT
            ctx.decision_reason = stale
            return ctx
        await self._before(ctx)
        if ctx.decision is Decision.DELAY:
            self._forget_repeated_delay(ctx, mark)
            return ctx
        if ctx.decision is Decision.REJECT:
            if creating:
                tree.discard(task.id)
            return ctx
        self._last_delay.pop(task.id, None)
        updated = (
            created_with(task, ctx.updates)
            if creating
            else apply_updates(task, ctx.proposed, ctx.updates, ctx.now)
        )
        tree.put(updated)
        ctx.updated = updated
        for rule in self.policy.reactions(ctx.from_status, ctx.proposed):
            await rule.after_transition(ctx)
        return ctx

    @staticmethod
    def _stale(request: TransitionRequest, task: Task) -> str | None:
        if request.expect_attempt is not None and request.expect_attempt != task.attempt:
            return f"stale: the task is at attempt {task.attempt}"
        owner = request.expect_lease_owner
        if owner is not None and owner != task.lease_owner:
            return "stale: the lease changed hands"
        if request.expect_status is not None and request.expect_status != task.status:
            return f"stale: the task is {task.status} now"
        return None

    async def _before(self, ctx: TransitionContext) -> None:
        while True:
            rewrites = ctx.rewrites
            for rule in self.policy.checks(ctx.from_status, ctx.proposed):
                await rule.before_transition(ctx)
                if ctx.settled or ctx.rewrites != rewrites:
                    break
            if ctx.settled or ctx.rewrites == rewrites:
                return
            if ctx.rewrites > MAX_REWRITES:
                ctx.decision = Decision.REJECT
                ctx.decision_reason = "the rules keep rewriting this transition"
                return

    def _forget_repeated_delay(self, ctx: TransitionContext, mark: int) -> None:
        key = f"{ctx.decided_by}: {ctx.decision_reason}"
        if self._last_delay.get(ctx.task.id) == key:
            ctx.events[mark:] = [e for e in ctx.events[mark:] if e.type != EventType.RULE_DECISION]
        else:
            self._last_delay[ctx.task.id] = key
            self._last_delay.move_to_end(ctx.task.id)
            while len(self._last_delay) > 100_000:
                self._last_delay.popitem(last=False)


_UPDATABLE = frozenset(
    {
        "attempt",
        "result",
        "lease_owner",
        "lease_expires_at",
        "not_before",
        "queued_at",
        "deadline_at",
    }
)


def _fields(task: Task, updates: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in updates.items():
        if key == "usage_delta":
            data["usage"] = task.usage + (
                value if isinstance(value, Usage) else Usage.model_validate(value)
            )
        elif key == "error":
            data["error"] = (
                None
                if value is None
                else value
                if isinstance(value, TaskError)
                else TaskError.model_validate(value)
            )
        elif key == "agent_type":
            data[key] = AgentType(value) if value is not None else None
        elif key == "phase":
            data[key] = Phase(value) if value is not None else None
        elif key in _UPDATABLE:
            data[key] = value
        else:
            raise ValueError(f"a transition cannot set {key!r}")
    return data


def apply_updates(task: Task, status: TaskStatus, updates: dict[str, Any], now: Any) -> Task:
    """The task after moving to `status` with `updates` written alongside."""
    data = _fields(task, updates)
    data.update(status=status, updated_at=now, version=task.version + 1)
    if status == TaskStatus.IN_PROGRESS and task.started_at is None:
        data["started_at"] = now
    if status in TERMINAL_STATUSES:
        data["finished_at"] = now
    return task.model_copy(update=data)


def created_with(task: Task, updates: dict[str, Any]) -> Task:
    """A task being created, with the fields the rules set on its creation."""
    if not updates:
        return task
    return task.model_copy(update=_fields(task, updates))
