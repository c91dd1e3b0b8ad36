"""The executor: takes ready work off the queue and runs it, under the rules.

Each executor (in the API process in embedded mode, in `devteam worker` at
scale) runs one loop per lane, in the manner of arq's worker: receive work
items, most urgent first; start them through the rules engine in one
transaction per batch (the concurrency rules may delay a start: the item is
then held, and tried again when a slot frees); hold each started piece of work
as an asyncio task; and heartbeat the leases of what it holds. The agent lane
runs attempts (`attempt.py` supervises each); the plan lane plans root tasks
(`planning.py`). An item is acknowledged only once its outcome is committed,
so a crash at any point loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from devteam.broker.channels import CONTROL_CHANNEL
from devteam.broker.protocol import Broker, QueueMessage, Subscription
from devteam.domain.agents import Agent
from devteam.domain.enums import LEASED_STATUSES, TERMINAL_STATUSES, AgentType, TaskStatus
from devteam.domain.errors import ErrorCode
from devteam.domain.tasks import Task, Usage
from devteam.observability import metrics, tracing
from devteam.observability.logging import get_logger, log_context
from devteam.orchestration.attempt import AttemptInputs, Running, StopReason, failed, run_attempt
from devteam.orchestration.clock import Clock
from devteam.orchestration.committer import GroupCommitter
from devteam.orchestration.engine import Engine, TransitionResult
from devteam.orchestration.planning import Planner, Planning
from devteam.orchestration.queue import PLAN_QUEUE, PRIORITY_QUEUES, WorkItem
from devteam.orchestration.recovery import end_lost_attempt
from devteam.orchestration.rules.base import Decision, TransitionRequest, Tree
from devteam.settings.team_leader import TeamLeaderConfig

log = get_logger(__name__)

S = TaskStatus
PLAN_BATCH = 64
"""Roots taken off the plan queue at once (planned in one transaction when they can be)."""


@dataclass
class _Held:
    """Received work that may not start yet (limits, back-off, a live lease elsewhere)."""

    item: WorkItem
    message: QueueMessage
    retry_at: float = 0.0
    """Monotonic time of the next try; 0: at the next freed slot."""
    received: float = field(default_factory=time.monotonic)


@dataclass
class _Lane:
    """One receive loop: which queues it reads, how much it may hold, what it does."""

    name: str
    queues: list[str]
    free: Callable[[], int]
    """How many more items this lane may take now."""
    freed: asyncio.Event
    """Set when `free` may have grown."""
    dispatch: Callable[[list[tuple[WorkItem, QueueMessage]]], Coroutine[Any, Any, None]]


class Executor:
    def __init__(
        self,
        *,
        engine: Engine,
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
        self.broker = broker
        self.agents = agents
        self.config = config
        self.clock = clock
        self.concurrency = concurrency
        self.planning_concurrency = planning_concurrency
        self.owner = f"{name}-{uuid.uuid4().hex[:10]}"
        self.planning = Planning(engine, planner, config, clock, self.owner)
        self._planning: set[UUID] = set()
        """Roots planned by an LLM right now (bounded by `planning_concurrency`)."""
        self._running: dict[UUID, Running] = {}
        self._held: dict[str, _Held] = {}
        self._retry_now = asyncio.Event()
        """Set when held work may be able to start now."""
        self._receiving = True
        self._halted = asyncio.Event()
        """Set once nothing runs any more after `stop()`: the loops end."""
        self._control: Subscription | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._group: asyncio.TaskGroup | None = None
        self._outcomes = GroupCommitter(engine)
        self._acks: dict[str, list[str]] = {}
        """Acknowledgements waiting to be sent together (see `_ack`)."""
        self._acking: asyncio.Future[None] | None = None
        self._reserved = 0
        """Slots held for attempts a transaction in this process is starting."""
        self._queue_drained = False
        """The last receive found less work than there was room for: nothing waits on
        the queue, so work made ready here may start here without a queue hop."""
        self._runs = _Lane(
            "runs",
            PRIORITY_QUEUES,
            lambda: self.concurrency - len(self._running) - len(self._held) - self._reserved,
            asyncio.Event(),
            self._start_received,
        )
        self._plans = _Lane(
            "plans",
            [PLAN_QUEUE],
            lambda: PLAN_BATCH if len(self._planning) < self.planning_concurrency else 0,
            asyncio.Event(),
            self._plan,
        )

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
        self._queue_drained = await self._nothing_queued()
        self.engine.local_runners.append(self)
        try:
            async with asyncio.TaskGroup() as group:
                # Attempts and plans run in this group too: run() ends only when they have.
                self._group = group
                group.create_task(self._receive_loop(self._runs), name="executor-receive")
                group.create_task(self._receive_loop(self._plans), name="executor-plan")
                group.create_task(self._heartbeat_loop(), name="executor-heartbeat")
                group.create_task(self._held_loop(), name="executor-held")
        finally:
            with contextlib.suppress(ValueError):
                self.engine.local_runners.remove(self)
            with contextlib.suppress(Exception):
                await self._control.close()

    # -- work started by transactions of this process (the engine's local runner) ---------

    async def _nothing_queued(self) -> bool:
        """No agent work waits on the queue now (else it goes first, in its order)."""
        try:
            depths = [await self.broker.queue.depth(queue) for queue in PRIORITY_QUEUES]
        except Exception:
            return False
        return all(depth.ready == 0 for depth in depths)

    def claimable(self) -> int:
        if not self._receiving or not self._queue_drained or self._held:
            return 0
        return max(self.concurrency - len(self._running) - self._reserved, 0)

    def lease_until(self) -> datetime:
        return self.clock.now() + timedelta(seconds=self.config().leases.duration_s)

    def reserve(self, count: int) -> None:
        self._reserved += count

    def release(self, count: int) -> None:
        self._reserved -= count
        self._runs.freed.set()

    def run_here(self, started: list[tuple[Task, Tree]], reserved: int) -> None:
        self._reserved -= reserved
        for task, tree in started:
            self._launch(Running(WorkItem.for_task(task), None), task, tree)
        self._update_slots()
        if len(started) < reserved:
            self._runs.freed.set()

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
        self._runs.freed.set()
        self._plans.freed.set()
        self._retry_now.set()
        await self._release_held()
        deadline = time.monotonic() + grace
        while self._running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for running in list(self._running.values()):
            running.stop(StopReason.SHUTDOWN)
        while self._running and time.monotonic() < deadline + 30:
            await asyncio.sleep(0.02)
        if self._running:
            log.error("attempts did not stop; their leases will expire", count=len(self._running))
        for pending in list(self._tasks):
            await asyncio.gather(pending, return_exceptions=True)
        await self._release_held()
        self._halted.set()

    # -- the loop ----------------------------------------------------------------------

    async def _receive_loop(self, lane: _Lane) -> None:
        """Receive what the lane has room for, and hand it to the lane's dispatch."""
        lease = self.config().leases.duration_s
        while self._receiving:
            free = lane.free()
            if free <= 0:
                lane.freed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lane.freed.wait(), 1.0)
                continue
            try:
                messages = await self.broker.queue.receive(
                    lane.queues, self.owner, max_messages=free, wait=1.0, visibility_timeout=lease
                )
            except Exception:
                log.exception("receiving work failed; retrying", lane=lane.name)
                await asyncio.sleep(1.0)
                continue
            if not self.accepting_work:
                await self._release(messages)
                return
            if lane is self._runs:
                self._queue_drained = len(messages) < free
            if messages:
                try:
                    await lane.dispatch([(WorkItem.decode(m.payload), m) for m in messages])
                except Exception:
                    log.exception("dispatching work failed; its items will come back")

    async def _start_received(self, batch: list[tuple[WorkItem, QueueMessage]]) -> None:
        """Start what was received, as far as there is room now; the rest goes back to the
        queue, which keeps it in priority order (a slot may have been taken by work started
        here while the receive waited)."""
        room = self.concurrency - len(self._running) - len(self._held) - self._reserved
        if room < len(batch):
            batch = sorted(batch, key=lambda pair: -pair[0].priority)
            batch, back = batch[: max(room, 0)], batch[max(room, 0) :]
            await self._release([message for _, message in back])
        if batch:
            await self._start(batch)

    async def _start(self, batch: list[tuple[WorkItem, QueueMessage]]) -> None:
        """Start a batch of attempts in one transaction; hold what must wait."""
        lease_until = self.clock.now() + timedelta(seconds=self.config().leases.duration_s)
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
        # Attempts first, before anything else can change their trees.
        later = []
        for (item, message), result in zip(batch, results, strict=True):
            if not self._launched(item, message, result):
                later.append((item, message, result))
        for item, message, result in later:
            await self._after_start(item, message, result)

    def _launched(self, item: WorkItem, message: QueueMessage, result: TransitionResult) -> bool:
        """Run the attempt if the start happened (and this executor is not stopping)."""
        task = result.task
        if result.accepted and task.status == S.IN_PROGRESS and self._receiving:
            assert result.tree is not None
            self._launch(Running(item, message), task, result.tree)
            self._update_slots()
            return True
        return False

    async def _after_start(
        self, item: WorkItem, message: QueueMessage, result: TransitionResult
    ) -> None:
        """A start that did not launch an attempt: hand it back, hold it, or drop it."""
        task = result.task
        if result.accepted and task.status == S.IN_PROGRESS:
            # Started just as this executor began to stop: hand it straight back.
            await self._outcomes.commit(
                failed(task, ErrorCode.WORKER_STOPPED, "the worker is stopping", Usage()),
                item.root_id,
            )
            await self._ack(message)
            return
        if result.decision is Decision.DELAY:
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
        if task.status in LEASED_STATUSES and task.lease_owner not in (None, self.owner):
            expires = task.lease_expires_at
            if expires is not None and expires > self.clock.now():
                # Its worker may be alive: look again when its lease would end.
                wait = (expires - self.clock.now()).total_seconds()
                self._hold(item, message, retry_in=wait + 0.05)
                return
            await end_lost_attempt(self.engine, task)
        await self._ack(message)

    # -- held work -------------------------------------------------------------------

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
        plans = [(h.item, h.message) for h in due if h.item.kind == "plan"]
        runs = [(h.item, h.message) for h in due if h.item.kind == "run"]
        if plans:
            await self._plan(plans)
        if runs:
            await self._start(runs)

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
                    running.stop(StopReason.CANCEL)

    # -- attempts --------------------------------------------------------------------

    def _launch(self, running: Running, task: Task, tree: Tree) -> None:
        """Run a started attempt; its inputs are read from the tree now, as it started."""
        self._running[task.id] = running
        inputs = AttemptInputs.of(task, tree, self.config(), self.clock.now())
        running.runner = self._spawn(self._attempt(running, task, inputs))

    async def _attempt(self, running: Running, task: Task, inputs: AttemptInputs) -> None:
        started = time.perf_counter()
        try:
            outcome = await run_attempt(
                running, task, inputs, engine=self.engine, agents=self.agents
            )
            if outcome is not None:
                running.recording = True
                agent = task.agent_type.value if task.agent_type else "none"
                await self._record(running, outcome, agent, time.perf_counter() - started)
        finally:
            self._finish(running)

    async def _record(
        self, running: Running, outcome: TransitionRequest, agent: str, elapsed: float
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
        metrics.series(metrics.AGENT_EXECUTIONS, agent, outcome.to.value).inc()
        metrics.series(metrics.AGENT_DURATION, agent).observe(elapsed)
        if running.message is not None:
            await self._ack(running.message)

    def _finish(self, running: Running) -> None:
        # Only this entry: a root's planning and its own attempt share the task id.
        if self._running.get(running.item.task_id) is running:
            del self._running[running.item.task_id]
        self._update_slots()
        self._runs.freed.set()
        self._retry_now.set()

    # -- planning --------------------------------------------------------------------

    async def _plan(self, batch: list[tuple[WorkItem, QueueMessage]]) -> None:
        """Start planning a batch of roots; plan with an LLM those that need one."""
        results = await self.planning.start([item for item, _ in batch])
        # Each root as it is now, read before anything else may change its tree.
        roots = [r.tree.get(r.task.id) if r.tree is not None else r.task for r in results]
        for (item, message), result, root in zip(batch, results, roots, strict=True):
            if not result.accepted:
                await self._not_started(item, message, result.task)
                continue
            if root.status != S.PLANNING:
                await self._ack(message)  # planned (or failed) without an LLM
                continue
            self._planning.add(item.task_id)
            self._spawn(self._plan_with_llm(item, message, root))

    async def _plan_with_llm(self, item: WorkItem, message: QueueMessage, root: Task) -> None:
        running = Running(item, message, runner=asyncio.current_task())
        self._running[item.task_id] = running
        try:
            with (
                tracing.continued(item.traceparent or root.trace_parent),
                tracing.span("team_leader.plan", devteam_task_id=str(root.id), llm=True),
                log_context(task_id=str(root.id), agent="team_leader"),
            ):
                await self.planning.with_llm(root, lambda: running.stop_reason)
            if running.stop_reason is not StopReason.LEASE_LOST:
                await self._ack(message)
        except Exception:
            # Unacknowledged, the item comes back when its lease ends.
            log.exception("recording a plan failed", task_id=root.id)
        finally:
            self._finish(running)
            self._planning.discard(root.id)
            self._plans.freed.set()

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
            renewed = await self.engine.renew_leases(self.owner, ids, until)
            for task_id in set(ids) - renewed:
                running = self._running.get(task_id)
                if running is not None:
                    log.warning("lease lost; stopping the attempt", task_id=task_id)
                    running.stop(StopReason.LEASE_LOST)
        by_queue: dict[str, list[str]] = {}
        for message in [r.message for r in self._running.values() if r.message] + [
            h.message for h in self._held.values()
        ]:
            by_queue.setdefault(message.queue, []).append(message.id)
        for queue, message_ids in by_queue.items():
            held = set(await self.broker.queue.extend(queue, self.owner, message_ids))
            for lost in set(message_ids) - held:
                # Another consumer has the item now; the database lease decides who runs.
                self._held.pop(lost, None)

    # -- helpers ---------------------------------------------------------------------

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        # Attempts catch their own errors, so one never cancels its siblings in the group.
        group = self._group
        task = group.create_task(coroutine) if group else asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _ack(self, message: QueueMessage) -> None:
        """Acknowledge a work item whose outcome is committed.

        Acknowledgements made in the same moment go together, one round trip per queue:
        an item acknowledged late is only delivered again, and then dropped as stale.
        """
        self._acks.setdefault(message.queue, []).append(message.id)
        if self._acking is None:
            self._acking = asyncio.get_running_loop().create_future()
            self._spawn(self._send_acks())
        await asyncio.shield(self._acking)

    async def _send_acks(self) -> None:
        await asyncio.sleep(0)  # let the acknowledgements of this moment gather
        acks, self._acks = self._acks, {}
        done, self._acking = self._acking, None
        for queue, ids in acks.items():
            try:
                await self.broker.queue.ack(queue, ids)
            except Exception:
                log.exception("acknowledging work failed; it will be delivered again")
        if done is not None and not done.done():
            done.set_result(None)

    async def _release(self, messages: Sequence[QueueMessage]) -> None:
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
        metrics.series(metrics.EXECUTOR_SLOTS, "busy").set(len(self._running))
