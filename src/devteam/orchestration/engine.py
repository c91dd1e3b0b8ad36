"""The rules engine: every status change of every task goes through `Engine.transition`.

One database transaction per call: the task's whole tree is loaded and locked,
the policy's rules run before the change (and may reject, delay or rewrite it),
the change is written, the rules run after it (events, follow-up transitions,
side effects), follow-up transitions run in the same transaction, and the
events are appended. Only after the commit are events published and side
effects (queueing work, stopping agents) carried out, so nothing is announced
that did not happen.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

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


@dataclass(frozen=True)
class TransitionResult:
    task: Task
    """The task after the call (unchanged when the transition did not happen)."""
    decision: Decision
    requested: TaskStatus
    reason: str | None = None
    rule: str | None = None
    delay_until: Any = None
    tree: Tree | None = field(default=None, compare=False, repr=False)

    @property
    def accepted(self) -> bool:
        return self.decision == Decision.ACCEPT

    @property
    def status(self) -> TaskStatus:
        return self.task.status


class Effects(Protocol):
    """Where committed changes go: event subscribers and the work queue."""

    async def publish(self, events: dict[UUID, list[Event]]) -> None: ...

    async def flush(self, outbox: Outbox) -> None: ...


Prepare = Callable[[UnitOfWork, dict[UUID, Tree]], Awaitable[Sequence[TransitionRequest]]]
"""Work done in the transaction before the transitions (e.g. inserting a plan)."""
Finish = Callable[[UnitOfWork, list[TransitionResult]], Awaitable[None]]
"""Work done in the transaction after the transitions, seeing their results (e.g. an
audit entry that must commit with them)."""


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
        # Last delay reason per task: a delay repeated for the same reason is not
        # recorded again, so retries of a waiting start do not flood the history.
        self._last_delay: OrderedDict[UUID, str] = OrderedDict()

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
        lock: Sequence[UUID] = (),
        prepare: Prepare | None = None,
        events: Sequence[tuple[UUID, NewEvent]] = (),
        finish: Finish | None = None,
    ) -> list[TransitionResult]:
        """Run several transitions (of one or several trees) in one transaction.

        `root_ids`, when given, are the roots of the tasks in `requests` (saves a
        lookup). `lock` names more roots to load and lock, for `prepare`, which runs
        first inside the transaction and may return more requests (their results
        follow those of `requests`); `events` are appended before the transitions'
        own. `finish` runs last inside the transaction with the results of `requests`.
        """
        outbox = Outbox()
        appended: dict[UUID, list[Event]] = {}
        async with self.store.transaction() as tx:
            roots = list(root_ids or [])
            if len(roots) != len(requests):
                known = await tx.tasks.root_ids([r.task_id for r in requests])
                missing = [r.task_id for r in requests if r.task_id not in known]
                if missing:
                    raise NotFound(f"task {missing[0]} does not exist")
                roots = [known[r.task_id] for r in requests]
            loaded = await tx.tasks.load_trees([*roots, *lock])
            trees = {root: Tree(rows) for root, rows in loaded.items()}
            pending_events: dict[UUID, list[NewEvent]] = defaultdict(list)
            for root, event in events:
                pending_events[root].append(event)
            all_requests = list(zip(roots, requests, strict=True))
            if prepare is not None:
                for extra in await prepare(tx, trees):
                    all_requests.append((self._root_of(trees, extra.task_id), extra))
            results = []
            for root, request in all_requests:
                tree = trees.get(root)
                if tree is None or request.task_id not in tree.tasks:
                    raise NotFound(f"task {request.task_id} does not exist")
                results.append(await self._run(tx, tree, request, outbox, pending_events[root]))
            if finish is not None:
                await finish(tx, results[: len(requests)])
            # Every change of the transaction is written once, in as few statements as
            # possible; the trees were locked, so nothing else changed these rows.
            await tx.tasks.write_changes([c for tree in trees.values() for c in tree.changes()])
            for tree in trees.values():
                tree.mark_written()
            appended = await tx.events.append_many(pending_events)
        if appended:
            await self.effects.publish(appended)
        await self.effects.flush(outbox)
        return results

    async def append_events(self, root_id: UUID, new: Sequence[NewEvent]) -> list[Event]:
        """Events that are not status changes (progress, tool calls)."""
        async with self.store.transaction() as tx:
            appended = await tx.events.append(root_id, new)
        await self.effects.publish({root_id: appended})
        return appended

    @staticmethod
    def _root_of(trees: dict[UUID, Tree], task_id: UUID) -> UUID:
        for root, tree in trees.items():
            if task_id in tree.tasks:
                return root
        raise NotFound(f"task {task_id} is not in the transaction's trees")

    async def _run(
        self,
        tx: UnitOfWork,
        tree: Tree,
        request: TransitionRequest,
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
            events.extend(current.events_before)
            ctx = await self._evaluate(tx, tree, current)
            result = TransitionResult(
                task=ctx.updated or ctx.task,
                decision=ctx.decision,
                requested=current.to,
                reason=ctx.decision_reason,
                rule=ctx.decided_by,
                delay_until=ctx.delay_until,
                tree=tree,
            )
            events.extend(ctx.events)
            outbox.merge(ctx.outbox)
            queue.extend(ctx.cascade)
            if first is None:
                first = result
        assert first is not None
        return first

    async def _evaluate(
        self, tx: UnitOfWork, tree: Tree, request: TransitionRequest
    ) -> TransitionContext:
        task = tree.get(request.task_id)
        ctx = TransitionContext(
            tx=tx,
            tree=tree,
            task=task,
            requested=request.to,
            proposed=request.to,
            config=self.config(),
            now=self.clock.now(),
            reason=request.reason,
            updates=dict(request.updates),
            event_data=dict(request.event_data),
        )
        if request.expect_attempt is not None and request.expect_attempt != task.attempt:
            # A work item of an earlier attempt: nothing to decide, nothing to record.
            ctx.decision = Decision.REJECT
            ctx.decision_reason = f"stale: the task is at attempt {task.attempt}"
            return ctx
        if request.expect_lease_owner is not None and (
            request.expect_lease_owner != task.lease_owner or task.status != request.expect_status
        ):
            # Taken over already (by another sweeper or worker): not again.
            ctx.decision = Decision.REJECT
            ctx.decision_reason = "stale: the lease changed hands"
            return ctx
        await self._before(ctx)
        if ctx.decision == Decision.DELAY:
            self._forget_repeated_delay(ctx)
            return ctx
        if ctx.decision == Decision.REJECT:
            return ctx
        self._last_delay.pop(task.id, None)
        updated = apply_updates(task, ctx.proposed, ctx.updates, ctx.now)
        tree.put(updated)
        ctx.updated = updated
        for rule in self.policy.for_transition(ctx.from_status, ctx.proposed):
            await rule.after_transition(ctx)
        return ctx

    async def _before(self, ctx: TransitionContext) -> None:
        while True:
            rewrites = ctx.rewrites
            for rule in self.policy.for_transition(ctx.from_status, ctx.proposed):
                await rule.before_transition(ctx)
                if ctx.settled or ctx.rewrites != rewrites:
                    break
            if ctx.settled or ctx.rewrites == rewrites:
                return
            if ctx.rewrites > MAX_REWRITES:
                ctx.decision = Decision.REJECT
                ctx.decision_reason = "the rules keep rewriting this transition"
                return

    def _forget_repeated_delay(self, ctx: TransitionContext) -> None:
        key = f"{ctx.decided_by}: {ctx.decision_reason}"
        if self._last_delay.get(ctx.task.id) == key:
            ctx.events = [e for e in ctx.events if e.type != EventType.RULE_DECISION]
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


def apply_updates(task: Task, status: TaskStatus, updates: dict[str, Any], now: Any) -> Task:
    """The task after moving to `status` with `updates` written alongside."""
    data: dict[str, Any] = {"status": status, "updated_at": now, "version": task.version + 1}
    for key, value in updates.items():
        if key == "usage_delta":
            data["usage"] = task.usage + (
                value if isinstance(value, Usage) else Usage.model_validate(value)
            )
        elif key == "error":
            data["error"] = TaskError.model_validate(value) if value is not None else None
        elif key == "agent_type":
            data[key] = AgentType(value) if value is not None else None
        elif key == "phase":
            data[key] = Phase(value) if value is not None else None
        elif key in _UPDATABLE:
            data[key] = value
        else:
            raise ValueError(f"a transition cannot set {key!r}")
    if status == TaskStatus.IN_PROGRESS and task.started_at is None:
        data["started_at"] = now
    if status in TERMINAL_STATUSES:
        data["finished_at"] = now
    return task.model_copy(update=data)
