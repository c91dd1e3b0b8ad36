"""Replay, then live: one task's events, each once and in `seq` order, whatever the transport.

Both the WebSocket subscriptions and the Server-Sent Events stream are an
`EventFollower` with their own `deliver`:

1. `listen()` subscribes to the root task's live events through the `EventHub`
   (from then on, nothing published is missed; what came before is in the table);
2. `replay()` reads the events table from `last`, page by page;
3. `follow()` hands on what arrived live, dropping every event whose `seq` was
   already delivered. A live event that skips ahead (messages of several
   publishing processes may interleave) makes it read the missing ones from the
   table first. Live events are only a fast path: when more pile up than
   `LIVE_BUFFER`, they are dropped and the table is read instead.

`deliver` may wait (a slow client): live events meanwhile wait in the bounded
buffer, and beyond it the table has them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from uuid import UUID

from devteam.api.hub import EventHub, Listening
from devteam.domain.events import Event
from devteam.storage import Store

REPLAY_PAGE = 500
"""Events read from the table per query while replaying."""
LIVE_BUFFER = 256
"""Live events one follower holds before it drops them and reads the table instead."""


class EventFollower:
    """Delivers the events of one task (a root task, or only one subtask's) after `after`."""

    def __init__(self, store: Store, hub: EventHub, task_id: UUID, after: int) -> None:
        self.store = store
        self.hub = hub
        self.task_id = task_id
        self.after = after
        self.last = after
        """The last `seq` delivered (or skipped as another subtask's)."""
        self.root_id: UUID | None = None
        self.subtask_id: UUID | None = None
        """Set when following a subtask: only its events are delivered."""
        self._live: deque[Event] = deque()
        self._resync = False
        self._wake = asyncio.Event()
        self._idle = False
        """True while `follow()` waits for live events with nothing buffered: `on_live`
        may then hand in-order events to `deliver_now` itself."""
        self.pause = False
        """Set (by `deliver`) to make `follow()` return, so the caller can look around."""

    def target(self, root_id: UUID, subtask_id: UUID | None) -> None:
        """The task was looked up: its root, and the subtask when it is one."""
        self.root_id = root_id
        self.subtask_id = subtask_id

    def wants(self, event: Event) -> bool:
        return self.subtask_id is None or event.subtask_id == self.subtask_id

    async def deliver(self, event: Event) -> None:
        """Hand one event on (in `seq` order, once); may wait for the client."""
        raise NotImplementedError

    def deliver_now(self, events: list[Event]) -> bool:
        """Optionally hand on in-order live `events` at once, from the hub's callback.

        Must not block; returns False (the default) to let `follow()` do it.
        """
        return False

    async def listen(self) -> Listening:
        assert self.root_id is not None
        return await self.hub.listen(self.root_id, self.on_live)

    def on_live(self, events: list[Event]) -> None:
        """Called by the hub for each published batch; never blocks."""
        if self._idle and self.deliver_now(events):
            return
        self._idle = False
        if len(self._live) + len(events) > LIVE_BUFFER:
            # Too many waiting: forget them, the table has them all.
            self._live.clear()
            self._resync = True
        else:
            self._live.extend(events)
        self._wake.set()

    async def replay(self, until: int | None = None) -> None:
        """Deliver the table's events after `last` (up to `until`), page by page."""
        assert self.root_id is not None
        while True:
            limit = REPLAY_PAGE if until is None else min(REPLAY_PAGE, until - self.last)
            if limit <= 0:
                return
            page: list[Event] = await self.hub.reads.read(
                ("events", self.root_id, self.last, limit), self._page(self.root_id, limit)
            )
            for event in page:
                await self._send(event)
            if len(page) < limit:
                return

    def _page(self, root_id: UUID, limit: int) -> Callable[[], Awaitable[list[Event]]]:
        after = self.last

        async def query() -> list[Event]:
            async with self.store.read() as tx:
                return await tx.events.list_after(root_id, after, limit)

        return query

    async def follow(self) -> None:
        """Deliver live events as they come; returns only once `pause` is set."""
        self.pause = False
        while not self.pause:
            if not self._live and not self._resync:
                self._idle = True
            await self._wake.wait()
            self._idle = False
            self._wake.clear()
            if self._resync:
                self._resync = False
                self._live.clear()
                await self.replay()
                continue
            while self._live:
                event = self._live.popleft()
                if event.seq <= self.last:
                    continue  # already sent (replayed, or read from the table to fill a gap)
                if event.seq > self.last + 1:
                    await self.replay(until=event.seq - 1)
                if event.seq == self.last + 1:
                    await self._send(event)
                else:
                    # The table did not have the missing events yet: read it again later.
                    self._resync = True
                    self._wake.set()
                    break

    def stop_fast_path(self) -> None:
        """From now on nothing is handed on from the hub's callback."""
        self._idle = False

    async def _send(self, event: Event) -> None:
        if self.wants(event):
            await self.deliver(event)
        self.last = event.seq
