"""The executor: takes ready work off the queue and runs it, under the rules.

Each executor process (the API process in embedded mode, `devteam worker` at
scale) loops: receive work items, most urgent first; start them through the
rules engine in one transaction per batch (the concurrency rules may delay a
start: the item is then held, and tried again when a slot frees); run each
started attempt as an asyncio task, supervised — timeouts, cancellation, lease
loss — and record its outcome through the engine. Leases in the database and
on the queue are renewed by one heartbeat loop; an item is acknowledged only
once its outcome is committed, so a crash at any point loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

from devteam.broker.protocol import Broker, QueueMessage, Subscription
from devteam.domain.agents import Agent, AgentFailed
from devteam.domain.enums import TERMINAL_STATUSES, AgentType, TaskStatus
from devteam.domain.errors import ErrorCode
from devteam.domain.events import EventType, NewEvent
from devteam.domain.tasks import Task, TaskResult, Usage
from devteam.observability import metrics, tracing
from devteam.observability.logging import get_logger, log_context
from devteam.orchestration.clock import Clock
from devteam.orchestration.committer import GroupCommitter
from devteam.orchestration.context import (
    ExecutionContext,
    attempt_deadline,
    build_spec,
    dependency_results,
)
from devteam.orchestration.engine import Engine, TransitionResult
from devteam.orchestration.planner import Planner, PlanningFailed, PlanOutcome, build_subtasks
from devteam.orchestration.recovery import end_lost_attempt
from devteam.orchestration.rules.base import Decision, TransitionRequest, Tree
from devteam.orchestration.work import CONTROL_CHANNEL, PLAN_QUEUE, PRIORITY_QUEUES, WorkItem
from devteam.settings.team_leader import TeamLeaderConfig
from devteam.storage import Store, UnitOfWork

log = get_logger(__name__)

S = TaskStatus
PLAN_BATCH = 64
"""Roots taken off the plan queue at once (planned in one transaction when they can be)."""


@dataclass
class _Running:
    item: WorkItem
    message: QueueMessage
    runner: asyncio.Task[Any] | None = None
    stop_reason: str | None = None
    """Why the runner was cancelled: `cancel`, `lease_lost` or `shutdown`."""
    recording: bool = False
    """The attempt is over and its outcome is being committed: nothing may cancel it now."""


@dataclass
class _Held:
    """Received work that may not start yet (limits, back-off, a live lease elsewhere)."""

    item: WorkItem
    message: QueueMessage
    retry_at: float = 0.0
    """Monotonic time of the next try; 0: at the next freed slot."""
    received: float = field(default_factory=time.monotonic)


class Executor:
    def __init__(
        self,
        *,
        engine: Engine,
        store: Store,
        broker: Broker,
        planner: Planner,
        agents: Mapping[AgentType, Agent],
        config: Callable[[], TeamLeaderConfig],
        clock: Clock,
        concurrency: int = 10,
        planning_concurrency: int = 4,
        name: str = "executor",
    ) -> None:
        self.engine = engine
        self.store = store
        self.broker = broker
        self.planner = planner
        self.agents = agents
        self.config = config
        self.clock = clock
        self.concurrency = concurrency
        self.planning_concurrency = planning_concurrency
        self._planning: set[UUID] = set()
        """Roots planned by an LLM right now (bounded by `planning_concurrency`)."""
        self._plan_slot_freed = asyncio.Event()
        self.owner = f"{name}-{uuid.uuid4().hex[:10]}"
        self._running: dict[UUID, _Running] = {}
        self._held: dict[str, _Held] = {}
        self._slot_freed = asyncio.Event()
        """Set when a running attempt ends: the receive loop may take more work."""
        self._retry_now = asyncio.Event()
        """Set when held work may be able to start now."""
        self._receiving = True
        self._halted = asyncio.Event()
        """Set once nothing runs any more after `stop()`: the loops end."""
        self._control: Subscription | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._group: asyncio.TaskGroup | None = None
        self._outcomes = GroupCommitter(engine)

    # -- lifecycle -------------------------------------------------------------------

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def accepting_work(self) -> bool:
        return self._receiving

    async def run(self) -> None:
        """Work until `stop()`; a broker outage is waited out, not fatal."""
        self._control = await self._subscribe_control()
        if self._control is None:
            return
        metrics.EXECUTOR_SLOTS.labels("total").set(self.concurrency)
        try:
            async with asyncio.TaskGroup() as group:
                # Attempts and plans run in this group too: run() ends only when they have.
                self._group = group
                group.create_task(self._receive_loop(), name="executor-receive")
                group.create_task(self._plan_loop(), name="executor-plan")
                group.create_task(self._heartbeat_loop(), name="executor-heartbeat")
                group.create_task(self._held_loop(), name="executor-held")
        finally:
            with contextlib.suppress(Exception):
                await self._control.close()

    async def _subscribe_control(self) -> Subscription | None:
        delay = 0.5
        while self._receiving:
            try:
                return await self.broker.pubsub.subscribe(CONTROL_CHANNEL, self._on_control)
            except Exception as exc:
                log.warning("cannot reach the broker; retrying", error=str(exc), in_s=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._halted.wait(), delay)
                delay = min(delay * 2, 10.0)
        return None

    async def stop(self, grace: float) -> None:
        """Stop taking work; let attempts finish for `grace` seconds; hand the rest back.

        Every loop ends at a safe point (never in the middle of a transaction), so
        `run()` returns by itself once this does.
        """
        self._receiving = False
        self._slot_freed.set()
        self._retry_now.set()
        await self._release_held()
        deadline = time.monotonic() + grace
        while self._running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for running in list(self._running.values()):
            self._stop_runner(running, "shutdown")
        while self._running and time.monotonic() < deadline + 30:
            await asyncio.sleep(0.02)
        if self._running:
            log.error("attempts did not stop; their leases will expire", count=len(self._running))
        for pending in list(self._tasks):
            await asyncio.gather(pending, return_exceptions=True)
        await self._release_held()
        self._halted.set()

    # -- receiving and starting -----------------------------------------------------

    async def _receive_loop(self) -> None:
        lease = self.config().leases.duration_s
        while self._receiving:
            free = self.concurrency - len(self._running) - len(self._held)
            if free <= 0:
                self._slot_freed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._slot_freed.wait(), 1.0)
                continue
            try:
                messages = await self.broker.queue.receive(
                    PRIORITY_QUEUES,
                    self.owner,
                    max_messages=free,
                    wait=1.0,
                    visibility_timeout=lease,
                )
            except Exception:
                log.exception("receiving work failed; retrying")
                await asyncio.sleep(1.0)
                continue
            if not self.accepting_work:
                await self._release(messages)
                return
            if messages:
                await self._dispatch([(WorkItem.decode(m.payload), m) for m in messages])

    async def _dispatch(self, batch: list[tuple[WorkItem, QueueMessage]]) -> None:
        plans = [(i, m) for i, m in batch if i.kind == "plan"]
        runs = [(i, m) for i, m in batch if i.kind == "run"]
        if plans:
            await self._plan_batch(plans)
        if runs:
            await self._start(runs)

    async def _plan_loop(self) -> None:
        """Take roots to plan, whatever agent work is running.

        Plans that need no LLM are made in batches, one transaction each; at most
        `planning_concurrency` LLM plans run at once.
        """
        lease = self.config().leases.duration_s
        while self._receiving:
            if len(self._planning) >= self.planning_concurrency:
                self._plan_slot_freed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._plan_slot_freed.wait(), 1.0)
                continue
            try:
                messages = await self.broker.queue.receive(
                    [PLAN_QUEUE],
                    self.owner,
                    max_messages=PLAN_BATCH,
                    wait=1.0,
                    visibility_timeout=lease,
                )
            except Exception:
                log.exception("receiving plans failed; retrying")
                await asyncio.sleep(1.0)
                continue
            if not self.accepting_work:
                await self._release(messages)
                return
            if messages:
                try:
                    await self._dispatch([(WorkItem.decode(m.payload), m) for m in messages])
                except Exception:
                    log.exception("planning a batch failed; its items will come back")

    async def _start(self, batch: list[tuple[WorkItem, QueueMessage]]) -> None:
        """Start a batch of attempts in one transaction; hold what must wait."""
        now = self.clock.now()
        lease_until = now + timedelta(seconds=self.config().leases.duration_s)
        requests = [
            TransitionRequest(
                item.task_id,
                S.IN_PROGRESS,
                updates={"lease_owner": self.owner, "lease_expires_at": lease_until},
                expect_attempt=item.attempt,
            )
            for item, _ in batch
        ]
        try:
            results = await self.engine.transition_many(
                requests, root_ids=[item.root_id for item, _ in batch]
            )
        except Exception:
            log.exception("starting work failed; holding it for a retry")
            for item, message in batch:
                self._hold(item, message, retry_in=1.0)
            return
        for (item, message), result in zip(batch, results, strict=True):
            await self._after_start(item, message, result)

    async def _after_start(
        self, item: WorkItem, message: QueueMessage, result: TransitionResult
    ) -> None:
        task = result.task
        if result.accepted and task.status == S.IN_PROGRESS and not self._receiving:
            # Started just as this executor began to stop: hand it straight back.
            await self._outcomes.commit(
                self._failed(task, ErrorCode.WORKER_STOPPED, "the worker is stopping", Usage()),
                item.root_id,
            )
            await self._ack(message)
            return
        if result.accepted and task.status == S.IN_PROGRESS:
            assert result.tree is not None
            running = _Running(item, message)
            self._running[task.id] = running
            running.runner = self._spawn(self._attempt(running, task, result.tree))
            self._update_slots()
            return
        if result.decision == Decision.DELAY:
            retry_in = 0.0
            if result.delay_until is not None:
                retry_in = max((result.delay_until - self.clock.now()).total_seconds(), 0.05)
            self._hold(item, message, retry_in=retry_in)
            return
        if result.accepted:
            # Rewritten to something else (e.g. failed: it waited too long); it is done here.
            await self._ack(message)
            return
        await self._not_started(item, message, task)

    async def _not_started(self, item: WorkItem, message: QueueMessage, task: Task) -> None:
        """A start was refused: drop a stale item, or take over from a dead worker."""
        if task.status in TERMINAL_STATUSES or task.attempt != item.attempt:
            await self._ack(message)
            return
        running_elsewhere = task.status in (S.IN_PROGRESS, S.CANCELLING, S.PLANNING)
        if running_elsewhere and task.lease_owner not in (None, self.owner):
            expires = task.lease_expires_at
            if expires is not None and expires > self.clock.now():
                # Its worker may be alive: look again when its lease would end.
                wait = (expires - self.clock.now()).total_seconds()
                self._hold(item, message, retry_in=wait + 0.05)
                return
            await end_lost_attempt(self.engine, task)
        await self._ack(message)

    def _hold(self, item: WorkItem, message: QueueMessage, retry_in: float = 0.0) -> None:
        retry_at = time.monotonic() + retry_in if retry_in > 0 else 0.0
        self._held[message.id] = _Held(item, message, retry_at)
        self._retry_now.set()

    async def _held_loop(self) -> None:
        """Try held work again when a slot frees, when its time comes, or every second."""
        while self._receiving:
            self._retry_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._retry_now.wait(), self._next_held_wait())
            try:
                await self._retry_held()
            except Exception:
                log.exception("retrying held work failed")

    def _next_held_wait(self) -> float:
        timed = [h.retry_at for h in self._held.values() if h.retry_at > 0]
        if not timed:
            return 1.0
        return min(max(min(timed) - time.monotonic(), 0.01), 1.0)

    async def _retry_held(self) -> None:
        if not self._held or not self.accepting_work:
            return
        free = self.concurrency - len(self._running)
        now = time.monotonic()
        due = sorted(
            (h for h in self._held.values() if h.retry_at <= now),
            key=lambda h: (-h.item.priority, h.received),
        )[: max(free, 0)]
        if not due:
            return
        for held in due:
            del self._held[held.message.id]
        await self._start([(h.item, h.message) for h in due])

    def _on_control(self, raw: bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            return
        if message.get("type") == "capacity":
            self._retry_now.set()
        elif message.get("type") == "cancel":
            for task_id in message.get("task_ids", []):
                running = self._running.get(UUID(task_id))
                if running is not None:
                    self._stop_runner(running, "cancel")

    # -- attempts --------------------------------------------------------------------

    async def _attempt(self, running: _Running, task: Task, tree: Tree) -> None:
        agent_type = task.agent_type.value if task.agent_type else "none"
        with (
            tracing.continued(running.item.traceparent or task.trace_parent),
            tracing.span(
                f"agent {agent_type}",
                devteam_task_id=str(task.id),
                devteam_root_id=str(task.root_id),
                devteam_agent_type=agent_type,
                devteam_attempt=task.attempt,
            ),
        ):
            await self._run_attempt(running, task, tree)

    async def _run_attempt(self, running: _Running, task: Task, tree: Tree) -> None:
        config = self.config()
        now = self.clock.now()
        agent = self.agents.get(task.agent_type) if task.agent_type else None
        context = ExecutionContext(
            self.engine, task, dependency_results(task, tree, [str(p) for p in config.phases])
        )
        outcome: TransitionRequest
        agent_label = task.agent_type.value if task.agent_type else "none"
        metrics.TASKS_IN_PROGRESS.labels(agent_label).inc()
        started = time.perf_counter()
        timeout = 0.0
        with log_context(task_id=str(task.id), agent=agent_label):
            try:
                if running.stop_reason is not None:
                    raise asyncio.CancelledError
                if agent is None:
                    raise AgentFailed(
                        ErrorCode.AGENT_UNAVAILABLE,
                        f"no agent of type {task.agent_type} is available",
                    )
                spec = build_spec(task, tree, config, now)
                timeout = (attempt_deadline(task, tree, config, now) - now).total_seconds()
                inner = asyncio.create_task(agent.execute(spec, context))
                try:
                    result = await asyncio.wait_for(asyncio.shield(inner), max(timeout, 0.001))
                except TimeoutError:
                    inner.cancel()
                    with contextlib.suppress(BaseException):
                        await inner
                    raise
                except asyncio.CancelledError:
                    inner.cancel()
                    with contextlib.suppress(BaseException):
                        await inner
                    raise
                outcome = self._completed(task, result, context)
            except asyncio.CancelledError:
                _uncancel()
                outcome = self._stopped(task, running.stop_reason, context)
                if running.stop_reason == "lease_lost":
                    self._finish(running)
                    return
            except TimeoutError:
                outcome = self._failed(
                    task,
                    ErrorCode.TIMEOUT,
                    f"the attempt did not finish within {timeout:g}s",
                    context.usage,
                )
            except AgentFailed as exc:
                usage = exc.usage if exc.usage != Usage() else context.usage
                outcome = self._failed(task, exc.error_code, exc.message, usage)
            except Exception as exc:
                log.exception("agent failed")
                outcome = self._failed(
                    task, ErrorCode.AGENT_ERROR, f"{type(exc).__name__}: {exc}", context.usage
                )
            finally:
                metrics.TASKS_IN_PROGRESS.labels(agent_label).dec()
            elapsed = time.perf_counter() - started
            running.recording = True
            try:
                await self._record(running, outcome, agent_label, elapsed)
            finally:
                self._finish(running)

    def _completed(
        self, task: Task, result: TaskResult, context: ExecutionContext
    ) -> TransitionRequest:
        usage = result.usage if result.usage != Usage() else context.usage
        return TransitionRequest(
            task.id,
            S.COMPLETED,
            updates={"result": result.model_dump(mode="json"), "usage_delta": usage},
            expect_attempt=task.attempt,
        )

    def _failed(
        self, task: Task, code: ErrorCode | str, message: str, usage: Usage
    ) -> TransitionRequest:
        return TransitionRequest(
            task.id,
            S.FAILED,
            updates={"error": {"code": str(code), "message": message}, "usage_delta": usage},
            expect_attempt=task.attempt,
        )

    def _stopped(
        self, task: Task, reason: str | None, context: ExecutionContext
    ) -> TransitionRequest:
        if reason == "cancel":
            return TransitionRequest(
                task.id,
                S.CANCELLED,
                reason="cancelled while running",
                updates={
                    "error": {"code": ErrorCode.CANCELLED.value, "message": "cancelled"},
                    "usage_delta": context.usage,
                },
                expect_attempt=task.attempt,
            )
        # Shutting down: hand the work back; it runs again elsewhere, at once.
        return self._failed(
            task, ErrorCode.WORKER_STOPPED, "the worker stopped before it finished", context.usage
        )

    async def _record(
        self, running: _Running, outcome: TransitionRequest, agent: str, elapsed: float
    ) -> None:
        """Commit the attempt's outcome, then acknowledge its work item."""
        item = running.item
        for delay in (0.0, 0.5, 1.0, 2.0, 4.0):
            if delay:
                await asyncio.sleep(delay)
            try:
                await self._outcomes.commit(outcome, item.root_id)
                break
            except Exception:
                log.exception("recording an outcome failed; retrying", task_id=item.task_id)
        else:
            # Leave the item unacknowledged: the lease runs out and it is retried.
            return
        metrics.AGENT_EXECUTIONS.labels(agent, outcome.to.value).inc()
        metrics.AGENT_DURATION.labels(agent).observe(elapsed)
        await self._ack(running.message)

    def _finish(self, running: _Running) -> None:
        # Only this entry: a root's planning and its own attempt share the task id.
        if self._running.get(running.item.task_id) is running:
            del self._running[running.item.task_id]
        self._update_slots()
        self._slot_freed.set()
        self._retry_now.set()

    def _stop_runner(self, running: _Running, reason: str) -> None:
        if running.recording:
            return
        if running.stop_reason is None:
            running.stop_reason = reason
        if running.runner is not None and not running.runner.done():
            running.runner.cancel()

    # -- planning --------------------------------------------------------------------

    async def _plan_batch(self, batch: list[tuple[WorkItem, QueueMessage]]) -> None:
        """Plan roots in one transaction when no LLM is needed; the rest under a lease."""
        config = self.config()
        lease_until = self.clock.now() + timedelta(seconds=config.leases.duration_s)
        planned_now: set[UUID] = set()
        stale: dict[UUID, Task] = {}

        async def start(tx: UnitOfWork, trees: dict[UUID, Tree]) -> list[TransitionRequest]:
            requests: list[TransitionRequest] = []
            for item, _ in batch:
                tree = trees[item.root_id]
                root = tree.get(item.task_id)
                if root.status != S.PENDING or root.attempt != item.attempt:
                    stale[root.id] = root  # planned already, or cancelled: nothing to decide
                    continue
                requests.append(
                    TransitionRequest(
                        root.id,
                        S.PLANNING,
                        updates={"lease_owner": self.owner, "lease_expires_at": lease_until},
                        expect_attempt=item.attempt,
                    )
                )
                try:
                    with (
                        tracing.continued(item.traceparent or root.trace_parent),
                        tracing.span("team_leader.plan", devteam_task_id=str(root.id)),
                    ):
                        outcome = self.planner.plan_now(root, config)
                except PlanningFailed as exc:
                    planned_now.add(root.id)
                    requests.append(self._planning_failed(root, exc))
                    continue
                if outcome is not None:
                    planned_now.add(root.id)
                    requests.append(await self._delegate_plan(tx, tree, root, outcome))
            return requests

        results = await self.engine.transition_many(
            [], lock=[item.root_id for item, _ in batch], prepare=start
        )
        begun = {r.task.id: r for r in results if r.requested == S.PLANNING}
        for item, message in batch:
            if item.task_id in stale:
                await self._not_started(item, message, stale[item.task_id])
                continue
            result = begun[item.task_id]
            if not result.accepted:
                await self._not_started(item, message, result.task)
            elif item.task_id in planned_now:
                await self._ack(message)
            else:
                self._planning.add(item.task_id)
                self._spawn(self._plan_with_llm(item, message, result.task, config))

    async def _plan_with_llm(
        self, item: WorkItem, message: QueueMessage, root: Task, config: TeamLeaderConfig
    ) -> None:
        running = _Running(item, message)
        self._running[item.task_id] = running
        running.runner = asyncio.current_task()
        with (
            tracing.continued(item.traceparent or root.trace_parent),
            tracing.span("team_leader.plan", devteam_task_id=str(root.id), llm=True),
            log_context(task_id=str(root.id), agent="team_leader"),
        ):
            try:
                outcome = await self.planner.plan(root, config)
            except asyncio.CancelledError:
                _uncancel()
                if running.stop_reason == "lease_lost":
                    self._finish(running)
                    self._done_planning(root.id)
                    return
                target = S.CANCELLED if running.stop_reason == "cancel" else S.PENDING
                await self.engine.transition(root.id, target, root_id=root.id, reason="stopped")
            except PlanningFailed as exc:
                await self.engine.transition_many(
                    [self._planning_failed(root, exc)], root_ids=[root.id]
                )
            except Exception as exc:
                log.exception("planning failed")
                await self.engine.transition(
                    root.id,
                    S.FAILED,
                    root_id=root.id,
                    error={"code": ErrorCode.INTERNAL_ERROR.value, "message": str(exc)},
                )
            else:

                async def write(tx: UnitOfWork, trees: dict[UUID, Tree]) -> list[TransitionRequest]:
                    tree = trees[root.id]
                    return [await self._delegate_plan(tx, tree, tree.get(root.id), outcome)]

                await self.engine.transition_many([], lock=[root.id], prepare=write)
            await self._ack(message)
            self._finish(running)
            self._done_planning(root.id)

    def _done_planning(self, root_id: UUID) -> None:
        self._planning.discard(root_id)
        self._plan_slot_freed.set()

    @staticmethod
    def _planning_failed(root: Task, exc: PlanningFailed) -> TransitionRequest:
        return TransitionRequest(
            root.id,
            S.FAILED,
            updates={
                "error": {"code": exc.code.value, "message": exc.message},
                "usage_delta": exc.usage,
            },
        )

    async def _delegate_plan(
        self, tx: UnitOfWork, tree: Tree, root: Task, outcome: PlanOutcome
    ) -> TransitionRequest:
        """Insert the plan's subtasks and propose delegating the root."""
        subtasks = build_subtasks(root, outcome.subtasks, self.clock.now())
        await tx.tasks.insert_many(subtasks)
        for subtask in subtasks:
            tree.add(subtask)
        planned = NewEvent(
            type=EventType.TASK_PLANNED,
            data={
                "planner": outcome.source,
                "rationale": outcome.rationale,
                "replans": outcome.replans,
                "subtasks": [
                    {
                        "id": str(s.id),
                        "key": s.key,
                        "task": s.task,
                        "agent_type": s.agent_type,
                        "phase": s.phase,
                        "complexity": s.complexity,
                        "depends_on": [str(d) for d in s.depends_on],
                    }
                    for s in subtasks
                ],
            },
        )
        return TransitionRequest(
            root.id,
            S.DELEGATED,
            reason=f"planned ({outcome.source})",
            updates={"usage_delta": outcome.usage},
            events_before=[planned],
        )

    # -- leases ----------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        # Runs until stop() is done: attempts finishing in the grace period keep their lease.
        while not self._halted.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._halted.wait(), self.config().leases.heartbeat_s)
            if self._halted.is_set():
                return
            try:
                await self.heartbeat()
            except Exception:
                log.exception("heartbeat failed")

    async def heartbeat(self) -> None:
        """Renew the leases of running work; stop attempts whose lease was taken over."""
        config = self.config()
        metrics.WORKER_HEARTBEAT.set(time.time())
        # An attempt recording its outcome has given its lease back already.
        ids = [task_id for task_id, r in self._running.items() if not r.recording]
        if ids:
            until = self.clock.now() + timedelta(seconds=config.leases.duration_s)
            async with self.store.transaction() as tx:
                renewed = await tx.tasks.renew_leases(self.owner, ids, until)
            for task_id in set(ids) - renewed:
                running = self._running.get(task_id)
                if running is not None:
                    log.warning("lease lost; stopping the attempt", task_id=task_id)
                    self._stop_runner(running, "lease_lost")
        by_queue: dict[str, list[str]] = {}
        for message in [r.message for r in self._running.values()] + [
            h.message for h in self._held.values()
        ]:
            by_queue.setdefault(message.queue, []).append(message.id)
        for queue, message_ids in by_queue.items():
            held = set(await self.broker.queue.extend(queue, self.owner, message_ids))
            for lost in set(message_ids) - held:
                # Another consumer has the item now; the database lease decides who runs.
                self._held.pop(lost, None)

    # -- helpers ---------------------------------------------------------------------

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        # Attempts catch their own errors, so one never cancels its siblings in the group.
        group = self._group
        task = group.create_task(coroutine) if group else asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _ack(self, message: QueueMessage) -> None:
        try:
            await self.broker.queue.ack(message.queue, [message.id])
        except Exception:
            log.exception("acknowledging work failed; it will be delivered again")

    async def _release(self, messages: list[QueueMessage]) -> None:
        by_queue: dict[str, list[str]] = {}
        for message in messages:
            by_queue.setdefault(message.queue, []).append(message.id)
        for queue, ids in by_queue.items():
            await self.broker.queue.release(queue, self.owner, ids)

    async def _release_held(self) -> None:
        held = [h.message for h in self._held.values()]
        self._held.clear()
        await self._release(held)

    def _update_slots(self) -> None:
        metrics.EXECUTOR_SLOTS.labels("busy").set(len(self._running))


def _uncancel() -> None:
    """We handle a cancellation we asked for; the task itself carries on."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
