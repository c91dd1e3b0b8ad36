"""Work items on the queue, control messages, and the effects of committed changes.

Work goes on ten queues, one per priority (10 first), so an executor always
takes the most urgent ready work. A work item names a task and its attempt; an
item for an older attempt, or for a task that moved on, is stale and dropped.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from devteam.broker.protocol import Broker
from devteam.domain.events import Event
from devteam.domain.tasks import Task
from devteam.observability import tracing
from devteam.observability.logging import get_logger
from devteam.orchestration.clock import Clock
from devteam.orchestration.rules.base import Outbox
from devteam.storage import Store

log = get_logger(__name__)

CONTROL_CHANNEL = "control"


def queue_for(priority: int) -> str:
    return f"tasks.p{priority:02d}"


PRIORITY_QUEUES = [queue_for(p) for p in range(10, 0, -1)]
"""The queues of agent work, most urgent first."""

PLAN_QUEUE = "plans"
"""Root tasks to plan: TeamLeader work, taken apart from agent work so it is never starved."""


def events_channel(root_id: UUID) -> str:
    return f"events.{root_id}"


@dataclass(frozen=True, slots=True)
class WorkItem:
    kind: Literal["plan", "run"]
    task_id: UUID
    root_id: UUID
    attempt: int
    priority: int
    traceparent: str | None = None
    """W3C trace context of whoever queued the work, so the trace crosses the queue."""

    @classmethod
    def for_task(cls, task: Task) -> WorkItem:
        kind: Literal["plan", "run"] = (
            "plan" if task.parent_id is None and task.status == "pending" else "run"
        )
        traceparent = tracing.current_traceparent() or task.trace_parent
        return cls(kind, task.id, task.root_id, task.attempt, task.priority, traceparent)

    def encode(self) -> bytes:
        data: dict[str, Any] = {
            "k": self.kind,
            "t": str(self.task_id),
            "r": str(self.root_id),
            "a": self.attempt,
            "p": self.priority,
        }
        if self.traceparent:
            data["tp"] = self.traceparent
        return json.dumps(data).encode()

    @classmethod
    def decode(cls, raw: bytes) -> WorkItem:
        data = json.loads(raw)
        return cls(
            data["k"],
            UUID(data["t"]),
            UUID(data["r"]),
            int(data["a"]),
            int(data["p"]),
            data.get("tp"),
        )


def encode_events(events: list[Event]) -> bytes:
    return json.dumps([e.model_dump(mode="json") for e in events]).encode()


def decode_events(raw: bytes) -> list[Event]:
    return [Event.model_validate(e) for e in json.loads(raw)]


def encode_control(kind: str, **data: Any) -> bytes:
    return json.dumps({"type": kind, **data}).encode()


class BrokerEffects:
    """Carries out committed changes: publish events, queue work, signal executors."""

    def __init__(self, broker: Broker, store: Store, clock: Clock) -> None:
        self.broker = broker
        self.store = store
        self.clock = clock
        self._timers: set[asyncio.TimerHandle] = set()
        self._due: set[asyncio.Task[None]] = set()
        self.on_capacity: list[Callable[[], None]] = []
        """Local listeners told at once when a slot frees (before pub/sub delivers)."""

    async def publish(self, events: dict[UUID, list[Event]]) -> None:
        for root_id, root_events in events.items():
            if root_events:
                await self.broker.pubsub.publish(
                    events_channel(root_id), encode_events(root_events)
                )

    async def flush(self, outbox: Outbox) -> None:
        if outbox.enqueue:
            await self.enqueue(outbox.enqueue)
        for task, when in outbox.enqueue_at:
            self._schedule(task, when)
        if outbox.cancel:
            await self.broker.pubsub.publish(
                CONTROL_CHANNEL,
                encode_control("cancel", task_ids=[str(t) for t in outbox.cancel]),
            )
        if outbox.capacity_freed:
            for listener in self.on_capacity:
                listener()
            await self.broker.pubsub.publish(CONTROL_CHANNEL, encode_control("capacity"))
        for callback in outbox.callbacks:
            outcome = callback()
            if outcome is not None:
                await outcome

    async def enqueue(self, tasks: list[Task]) -> None:
        by_queue: dict[str, list[bytes]] = defaultdict(list)
        for task in tasks:
            item = WorkItem.for_task(task)
            queue = PLAN_QUEUE if item.kind == "plan" else queue_for(task.priority)
            by_queue[queue].append(item.encode())
        for queue, payloads in by_queue.items():
            await self.broker.queue.enqueue(queue, payloads)

    def _schedule(self, task: Task, when: datetime) -> None:
        """Queue a retry when its back-off ends (the sweeper catches any this misses)."""
        delay = max((when - self.clock.now()).total_seconds(), 0.0)
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            pending = loop.create_task(self._enqueue_due(task.id))
            self._due.add(pending)
            pending.add_done_callback(self._due.discard)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    async def _enqueue_due(self, task_id: UUID) -> None:
        try:
            async with self.store.transaction() as tx:
                due = await tx.tasks.mark_queued([task_id], self.clock.now())
            await self.enqueue(due)
        except Exception:
            log.exception("queueing a retry failed; the sweeper will queue it", task_id=task_id)

    def cancel_timers(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
