"""The effects of committed changes: publish events, queue work, signal executors.

The engine hands each transaction's `Outbox` here after the commit, so nothing
is announced or queued that did not happen.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

from devteam.broker.channels import CONTROL_CHANNEL, encode_control, encode_events, events_channel
from devteam.broker.protocol import Broker
from devteam.domain.events import Event
from devteam.domain.tasks import Task
from devteam.observability.logging import get_logger
from devteam.orchestration.clock import Clock
from devteam.orchestration.queue import WorkItem
from devteam.orchestration.rules.base import Outbox

if TYPE_CHECKING:
    from devteam.orchestration.engine import Engine

log = get_logger(__name__)


class BrokerEffects:
    """Carries out committed changes: publish events, queue work, signal executors."""

    def __init__(self, broker: Broker, clock: Clock) -> None:
        self.broker = broker
        self.clock = clock
        self.engine: Engine | None = None
        """Set by the engine that uses these effects: a retry due later is queued through it."""
        self._timers: set[asyncio.TimerHandle] = set()
        self._due: set[asyncio.Task[None]] = set()
        self.on_capacity: list[Callable[[], None]] = []
        """Local listeners told at once when a slot frees (before pub/sub delivers)."""

    async def publish(self, events: dict[UUID, list[Event]]) -> None:
        """Each root's events on its channel, every root's in one round trip."""
        await self.broker.pubsub.publish_many(
            [
                (events_channel(root_id), encode_events(root_events))
                for root_id, root_events in events.items()
                if root_events
            ]
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

    async def enqueue(self, tasks: Sequence[Task]) -> None:
        by_queue: dict[str, list[bytes]] = defaultdict(list)
        for task in tasks:
            item = WorkItem.for_task(task)
            by_queue[item.queue].append(item.encode())
        for queue, payloads in by_queue.items():
            await self.broker.queue.enqueue(queue, payloads)

    def _schedule(self, task: Task, when: datetime) -> None:
        """Queue a retry when its back-off ends (the sweeper catches any this misses)."""
        delay = max((when - self.clock.now()).total_seconds(), 0.0)
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            pending = loop.create_task(self._enqueue_due(task))
            self._due.add(pending)
            pending.add_done_callback(self._due.discard)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    async def _enqueue_due(self, task: Task) -> None:
        if self.engine is None:
            return
        try:
            await self.engine.requeue([task])
        except Exception:
            log.exception("queueing a retry failed; the sweeper will queue it", task_id=task.id)

    def cancel_timers(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
