"""Live events of root tasks, fanned out to the WebSocket connections of this process.

The engine publishes each committed batch of a root task's events on the broker
channel `events.{root_id}`. The hub holds one broker subscription per root task
that somebody here follows, whatever the number of connections following it,
decodes each message once and hands the events to every local listener. A
listener is called in the event loop and must not block (it only buffers).

The hand-over goes `FAN_OUT_SLICE` listeners per turn of the event loop, so the
rest of the process (the producer's next transaction, say) runs between slices
instead of waiting for a thousand listeners; events that arrive meanwhile go to
the listeners not yet served together with the ones on their way (one write to
their connection instead of two), and to the others in a round of their own.
Each listener gets every batch once, in publishing order.

Events produced by any process arrive here through the broker (Redis pub/sub
with several processes), so a client may connect to any replica.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Any
from uuid import UUID

from devteam.broker.channels import decode_events, events_channel
from devteam.broker.protocol import Broker, Subscription
from devteam.domain.errors import ServiceUnavailable
from devteam.domain.events import Event
from devteam.observability.logging import get_logger

log = get_logger(__name__)

Listener = Callable[[list[Event]], None]
"""Receives each published batch of a root task's events, in publishing order."""


FAN_OUT_SLICE = 25
"""Listeners handed events per turn of the event loop (a quarter of a millisecond or so,
writing to WebSocket connections): a burst's next event, committed meanwhile, reaches
most listeners together with the one on its way."""


class _Round:
    """Events on their way to some listeners, in order; those before `position` have them."""

    __slots__ = ("events", "listeners", "position")

    def __init__(self, events: list[Event], listeners: list[Listener]) -> None:
        self.events = events
        self.listeners = listeners
        self.position = 0


class _Channel:
    """The broker subscription of one root task and its local listeners."""

    def __init__(self, root_id: UUID) -> None:
        self.root_id = root_id
        self.listeners: set[Listener] = set()
        self.opened: asyncio.Future[Subscription] | None = None
        self._rounds: deque[_Round] = deque()
        self._scheduled = False

    def dispatch(self, raw: bytes) -> None:
        try:
            events = decode_events(raw)
        except Exception:
            log.warning("an undecodable event message was skipped", root_id=str(self.root_id))
            return
        self.hand_on(events)

    def hand_on(self, events: list[Event]) -> None:
        """Queue `events` for every listener now, after the batches queued before."""
        if not self.listeners or not events:
            return
        rounds = self._rounds
        if not rounds:
            rounds.append(_Round(events, list(self.listeners)))
        else:
            # The listeners the last round has not served yet take these with it; each
            # of them has nothing queued after that round. The others get a round of
            # their own, after every round queued.
            last = rounds[-1]
            last.events = [*last.events, *events]
            waiting = set(last.listeners[last.position :])
            others = [listener for listener in self.listeners if listener not in waiting]
            if others:
                rounds.append(_Round(events, others))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._step)

    def _step(self) -> None:
        """Hand on up to `FAN_OUT_SLICE` listeners' events; come back next turn for more."""
        self._scheduled = False
        rounds, current = self._rounds, self.listeners
        budget = FAN_OUT_SLICE
        while rounds and budget > 0:
            round_ = rounds[0]
            start = round_.position
            end = min(start + budget, len(round_.listeners))
            round_.position = end
            budget -= end - start
            if end == len(round_.listeners):
                rounds.popleft()
            events = round_.events
            for listener in round_.listeners[start:end]:
                if listener not in current:
                    continue  # it left meanwhile
                try:
                    listener(events)
                except Exception:
                    log.exception("an event listener failed", root_id=str(self.root_id))
        if rounds:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._step)

    def clear(self) -> None:
        """No listener is left: drop what was on its way."""
        self._rounds.clear()


class Listening:
    """A listener registered with the hub; `close()` it when done."""

    def __init__(self, hub: EventHub, channel: _Channel, listener: Listener) -> None:
        self._hub = hub
        self._channel = channel
        self._listener = listener
        self._closed = False

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._hub._leave(self._channel, self._listener)


class SharedReads:
    """The same read, asked by many followers at once, made once: one in flight per key.

    A caller joins the read that has not started yet, or starts one when none
    waits; a read starts only once the previous one of its key is done. So every
    read that serves a caller starts after the caller asked for it: a follower
    that listened to live events before asking misses nothing between the two.
    A thousand subscribers of one task, connecting together, cost a few queries
    instead of a thousand.
    """

    def __init__(self) -> None:
        self._waiting: dict[Hashable, asyncio.Future[Any]] = {}
        self._running: dict[Hashable, asyncio.Future[Any]] = {}

    async def read(self, key: Hashable, query: Callable[[], Awaitable[Any]]) -> Any:
        waiting = self._waiting.get(key)
        if waiting is not None:
            with contextlib.suppress(Exception):
                return await asyncio.shield(waiting)
            return await query()  # the shared read failed: try on our own
        mine: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[key] = mine
        try:
            running = self._running.get(key)
            if running is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(running)
            del self._waiting[key]
            self._running[key] = mine
            result = await query()
        except BaseException as exc:
            if self._waiting.get(key) is mine:
                del self._waiting[key]
            # Whoever joined reads on its own (a cancellation is only ours).
            mine.set_exception(exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
            mine.exception()  # retrieved: nobody may have joined
            raise
        else:
            mine.set_result(result)
            return result
        finally:
            if self._running.get(key) is mine:
                del self._running[key]


class EventHub:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._channels: dict[UUID, _Channel] = {}
        self._closed = False
        self.reads = SharedReads()
        """Replay pages and task look-ups shared by the followers of this process."""

    @property
    def channels(self) -> int:
        """Root tasks followed on the broker by this process now."""
        return len(self._channels)

    async def listen(self, root_id: UUID, listener: Listener) -> Listening:
        """Call `listener` with every batch of `root_id`'s events published from now on.

        Returns once the broker subscription is live, so nothing published after
        this returns is missed; what was published before is in the events table.
        """
        if self._closed:
            raise ServiceUnavailable("the service is shutting down")
        channel = self._channels.get(root_id)
        if channel is None:
            channel = self._channels[root_id] = _Channel(root_id)
            channel.opened = asyncio.ensure_future(
                self._broker.pubsub.subscribe(events_channel(root_id), channel.dispatch)
            )
        channel.listeners.add(listener)
        assert channel.opened is not None
        try:
            # Shielded: one caller giving up must not cancel the others' subscription.
            await asyncio.shield(channel.opened)
        except BaseException:
            await self._leave(channel, listener)
            raise
        return Listening(self, channel, listener)

    async def _leave(self, channel: _Channel, listener: Listener) -> None:
        channel.listeners.discard(listener)
        if channel.listeners or self._channels.get(channel.root_id) is not channel:
            return
        channel.clear()
        del self._channels[channel.root_id]
        assert channel.opened is not None
        try:
            subscription = await channel.opened
        except Exception:
            return
        with contextlib.suppress(Exception):
            await subscription.close()

    async def close(self) -> None:
        """Drop every broker subscription (at shutdown, once the connections are gone)."""
        self._closed = True
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            channel.listeners.clear()
            channel.clear()
            assert channel.opened is not None
            if not channel.opened.done():
                channel.opened.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                subscription = await channel.opened
                await subscription.close()
