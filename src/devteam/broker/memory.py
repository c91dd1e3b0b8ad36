"""The in-process broker: the embedded default, for one process."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from limits.aio.storage import MemoryStorage, Storage

from devteam.broker.protocol import MessageHandler, QueueDepth, QueueMessage
from devteam.observability.logging import get_logger

log = get_logger(__name__)


@dataclass(slots=True)
class _Message:
    id: str
    payload: bytes
    deliveries: int = 0


@dataclass(slots=True)
class _Lease:
    message: _Message
    consumer: str
    deadline: float
    """Visibility deadline on the monotonic clock."""
    visibility_timeout: float


@dataclass(slots=True)
class _Queue:
    ready: deque[_Message] = field(default_factory=deque)
    in_flight: dict[str, _Lease] = field(default_factory=dict)
    deadlines: list[tuple[float, str]] = field(default_factory=list)
    """Heap of (deadline, id); entries whose lease moved on are skipped lazily."""


class MemoryWorkQueue:
    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}
        self._ids = itertools.count(1)
        # One condition for every queue: a waiter may listen to several queues at once.
        self._changed = asyncio.Condition()

    def _queue(self, name: str) -> _Queue:
        if (q := self._queues.get(name)) is None:
            q = self._queues[name] = _Queue()
        return q

    async def enqueue(self, queue: str, payloads: Sequence[bytes]) -> list[str]:
        q = self._queue(queue)
        ids = []
        for payload in payloads:
            message = _Message(id=str(next(self._ids)), payload=payload)
            q.ready.append(message)
            ids.append(message.id)
        async with self._changed:
            self._changed.notify_all()
        return ids

    @staticmethod
    def _reclaim_expired(q: _Queue, now: float) -> float | None:
        """Move timed-out messages back to the front; return the next deadline."""
        expired: list[_Message] = []
        while q.deadlines and q.deadlines[0][0] <= now:
            deadline, mid = heapq.heappop(q.deadlines)
            lease = q.in_flight.get(mid)
            if lease is not None and lease.deadline == deadline:
                expired.append(q.in_flight.pop(mid).message)
        # Oldest first at the front, so redelivery keeps the original order.
        for message in sorted(expired, key=lambda m: int(m.id), reverse=True):
            q.ready.appendleft(message)
        return q.deadlines[0][0] if q.deadlines else None

    async def receive(
        self,
        queues: Sequence[str],
        consumer: str,
        *,
        max_messages: int = 1,
        wait: float = 1.0,
        visibility_timeout: float = 30.0,
    ) -> list[QueueMessage]:
        give_up = time.monotonic() + wait
        async with self._changed:
            while True:
                now = time.monotonic()
                taken: list[QueueMessage] = []
                next_deadline: float | None = None
                for name in queues:
                    q = self._queue(name)
                    deadline = self._reclaim_expired(q, now)
                    if deadline is not None:
                        next_deadline = min(deadline, next_deadline or deadline)
                    while q.ready and len(taken) < max_messages:
                        message = q.ready.popleft()
                        message.deliveries += 1
                        until = now + visibility_timeout
                        q.in_flight[message.id] = _Lease(
                            message, consumer, until, visibility_timeout
                        )
                        heapq.heappush(q.deadlines, (until, message.id))
                        taken.append(
                            QueueMessage(name, message.id, message.payload, message.deliveries)
                        )
                if taken:
                    return taken
                if now >= give_up:
                    return []
                timeout = give_up - now
                if next_deadline is not None:
                    timeout = min(timeout, max(next_deadline - now, 0.0))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout)

    async def ack(self, queue: str, message_ids: Sequence[str]) -> None:
        q = self._queue(queue)
        for mid in message_ids:
            q.in_flight.pop(mid, None)

    async def extend(self, queue: str, consumer: str, message_ids: Sequence[str]) -> list[str]:
        q = self._queue(queue)
        held = []
        now = time.monotonic()
        for mid in message_ids:
            lease = q.in_flight.get(mid)
            if lease is not None and lease.consumer == consumer:
                lease.deadline = now + lease.visibility_timeout
                heapq.heappush(q.deadlines, (lease.deadline, mid))
                held.append(mid)
        return held

    async def release(self, queue: str, consumer: str, message_ids: Sequence[str]) -> None:
        q = self._queue(queue)
        released = 0
        for mid in reversed(list(message_ids)):
            lease = q.in_flight.get(mid)
            if lease is not None and lease.consumer == consumer:
                del q.in_flight[mid]
                q.ready.appendleft(lease.message)
                released += 1
        if released:
            async with self._changed:
                self._changed.notify_all()

    async def depth(self, queue: str) -> QueueDepth:
        q = self._queue(queue)
        return QueueDepth(ready=len(q.ready), in_flight=len(q.in_flight))


class _MemorySubscription:
    def __init__(self, pubsub: MemoryPubSub, channel: str, handler: MessageHandler) -> None:
        self._pubsub = pubsub
        self.channel = channel
        self.handler = handler

    async def close(self) -> None:
        self._pubsub._remove(self)


class MemoryPubSub:
    def __init__(self) -> None:
        self._subscribers: dict[str, list[_MemorySubscription]] = {}

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        for channel, message in messages:
            await self.publish(channel, message)

    async def publish(self, channel: str, message: bytes) -> None:
        # Handed on at the loop's next turn, like a message from Redis: the publisher
        # goes on at once (its next transaction overlaps the fan-out), and the
        # subscribers of this moment get it, in publishing order.
        subscriptions = self._subscribers.get(channel)
        if subscriptions:
            asyncio.get_running_loop().call_soon(
                self._deliver, channel, tuple(subscriptions), message
            )

    @staticmethod
    def _deliver(
        channel: str, subscriptions: tuple[_MemorySubscription, ...], message: bytes
    ) -> None:
        for subscription in subscriptions:
            try:
                subscription.handler(message)
            except Exception:
                log.exception("pubsub handler failed", channel=channel)

    async def subscribe(self, channel: str, handler: MessageHandler) -> _MemorySubscription:
        subscription = _MemorySubscription(self, channel, handler)
        self._subscribers.setdefault(channel, []).append(subscription)
        return subscription

    def _remove(self, subscription: _MemorySubscription) -> None:
        subscribers = self._subscribers.get(subscription.channel, [])
        if subscription in subscribers:
            subscribers.remove(subscription)
        if not subscribers:
            self._subscribers.pop(subscription.channel, None)


class MemoryCache:
    """A TTL cache bounded in entries (least recently used go first)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._max_entries = max_entries

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires <= time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._entries[key] = (value, time.monotonic() + ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)


class MemoryBroker:
    kind: Literal["memory", "redis"] = "memory"

    def __init__(self) -> None:
        self.queue = MemoryWorkQueue()
        self.pubsub = MemoryPubSub()
        self.cache = MemoryCache()
        self._limits = MemoryStorage()

    def rate_limit_storage(self) -> Storage:
        return self._limits

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
