"""The broker protocol: work queue, pub/sub, cache and rate-limit storage.

Two implementations follow it — `memory` (one process, the embedded default) and
`redis` (several processes) — and one contract test suite runs against both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from limits.aio.storage import Storage


@dataclass(frozen=True, slots=True)
class QueueMessage:
    queue: str
    """The queue the message came from."""
    id: str
    """Opaque id to `ack`, `extend` or `release` the message with (in its queue)."""
    payload: bytes
    deliveries: int
    """1 on the first delivery; more when the message came back (timeout or release)."""


@dataclass(frozen=True, slots=True)
class QueueDepth:
    ready: int
    """Waiting to be delivered."""
    in_flight: int
    """Delivered and not yet acknowledged."""


class WorkQueue(Protocol):
    """At-least-once delivery with a visibility timeout.

    A received message stays invisible to other consumers until it is acknowledged,
    released, or its visibility timeout passes without `extend`; then it is
    delivered again. Use one visibility timeout per queue everywhere.
    """

    async def enqueue(self, queue: str, payloads: Sequence[bytes]) -> list[str]: ...

    async def receive(
        self,
        queues: Sequence[str],
        consumer: str,
        *,
        max_messages: int = 1,
        wait: float = 1.0,
        visibility_timeout: float = 30.0,
    ) -> list[QueueMessage]:
        """Up to `max_messages` from `queues`, earlier queues first (priority order).

        Waits at most `wait` seconds for the first message. Messages whose
        visibility timeout passed are delivered again before new ones.
        """
        ...

    async def ack(self, queue: str, message_ids: Sequence[str]) -> None: ...

    async def extend(self, queue: str, consumer: str, message_ids: Sequence[str]) -> list[str]:
        """Restart the visibility timeout of messages `consumer` still holds.

        Returns the ids it still holds; a message missing from the answer was
        taken over by another consumer and must not be worked on further.
        """
        ...

    async def release(self, queue: str, consumer: str, message_ids: Sequence[str]) -> None:
        """Hand messages back for immediate redelivery (e.g. on a clean shutdown)."""
        ...

    async def depth(self, queue: str) -> QueueDepth: ...


MessageHandler = Callable[[bytes], None]
"""Called in the event loop for each message; it must not block."""


class Subscription(Protocol):
    channel: str

    async def close(self) -> None: ...


class PubSub(Protocol):
    """Fire-and-forget fan-out: subscribers get what is published after they subscribed."""

    async def publish(self, channel: str, message: bytes) -> None: ...

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Publish (channel, message) pairs in this order, in one round trip."""
        ...

    async def subscribe(self, channel: str, handler: MessageHandler) -> Subscription:
        """Returns once the subscription is live: later publishes reach `handler`."""
        ...


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float) -> None: ...

    async def delete(self, key: str) -> None: ...


class Broker(Protocol):
    @property
    def kind(self) -> Literal["memory", "redis"]: ...

    @property
    def queue(self) -> WorkQueue: ...

    @property
    def pubsub(self) -> PubSub: ...

    @property
    def cache(self) -> Cache: ...

    def rate_limit_storage(self) -> Storage:
        """Storage for the `limits` library, shared by every process on this broker."""
        ...

    async def ping(self) -> None:
        """Raise when the broker cannot be reached."""
        ...

    async def close(self) -> None: ...
