"""`GET /api/v1/tasks/{id}/events/stream`: a task's events as Server-Sent Events.

Each event goes out as `id: <seq>` and `data: <Event JSON>`. A client that
reconnects with `Last-Event-ID` (browsers' `EventSource` do it by themselves)
or `?after=` gets what followed, with no gap and no duplicate: the stream is an
`EventFollower` (api/follow.py), like a WebSocket subscription. Keep-alive
comments go out every `sse_keepalive_s` seconds. The stream ends once the task,
and every subtask under it, has finished and every event is sent; or when, at a
check every `ws_heartbeat_s` seconds, the caller's token has expired, their
session ended or they may no longer read the task.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from devteam.api.access import readable_task
from devteam.api.deps import ServicesDep
from devteam.api.docs import error_responses
from devteam.api.follow import EventFollower
from devteam.api.hub import EventHub
from devteam.api.security import CurrentUser, bearer_token
from devteam.api.websocket import event_text
from devteam.domain.enums import TERMINAL_STATUSES
from devteam.domain.errors import ErrorCode, Unauthorized
from devteam.domain.events import TERMINAL_EVENTS, Event
from devteam.domain.permissions import TASKS_READ
from devteam.observability.logging import get_logger
from devteam.security import Principal, Security
from devteam.storage import Store

log = get_logger(__name__)

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])

QUEUE_SIZE = 64
"""Events waiting for the client; beyond them the follower waits (and the table keeps them)."""
SEND_TIMEOUT_S = 60.0
"""A client that takes no bytes for this long is disconnected."""


_EXAMPLE = (
    ": ping - 2025-01-31 09:30:15.000000+00:00\r\n\r\n"
    "id: 7\r\n"
    'data: {"id":"9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b",'
    '"task_id":"6f1c0b5e-3c9e-4a8e-9d7a-2f4b1e6c8a10","subtask_id":null,"seq":7,'
    '"type":"task.completed","data":{"status":"completed","from":"in_progress","attempt":1},'
    '"ts":"2025-01-31T09:30:16.512000Z"}\r\n\r\n'
)


class TaskEventStream(EventFollower):
    """Hands one task's events to the response through a bounded queue, until the end."""

    def __init__(self, store: Store, hub: EventHub, task_id: UUID, after: int) -> None:
        super().__init__(store, hub, task_id, after)
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_SIZE)
        self.root_finished = False

    async def deliver(self, event: Event) -> None:
        await self.queue.put(event)
        if event.type not in TERMINAL_EVENTS:
            return
        if event.subtask_id is None:
            self.root_finished = True
        # Time to see whether everything has finished (`run` decides).
        if self.root_finished or event.subtask_id == self.subtask_id:
            self.pause = True

    async def run(self) -> None:
        """Replay, follow until the task has finished, send the rest, then the end (None)."""
        try:
            listening = await self.listen()
            try:
                await self.replay()
                while not await self._finished():
                    await self.follow()
                await self.replay()
            finally:
                await listening.close()
        except BaseException:
            # Cut short (the client left, or a failure): never wait for room here.
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)
            raise
        await self.queue.put(None)

    async def _finished(self) -> bool:
        """The followed task and everything under it are finished."""
        assert self.root_id is not None
        async with self.store.read() as tx:
            if self.subtask_id is not None:
                subtask = await tx.tasks.get(self.subtask_id)
                return subtask is None or subtask.status in TERMINAL_STATUSES
            trees = await tx.tasks.load_trees([self.root_id], for_update=False)
        tree = trees.get(self.root_id, [])
        self.root_finished = any(
            t.id == self.root_id and t.status in TERMINAL_STATUSES for t in tree
        )
        return all(t.status in TERMINAL_STATUSES for t in tree)


async def _open(
    store: Store, hub: EventHub, caller: Principal, task_id: UUID, after: int
) -> tuple[TaskEventStream, UUID]:
    """The stream of a task the caller may read (404 otherwise, as for reading the task)."""
    async with store.read() as tx:
        task, root = await readable_task(tx, caller, task_id)
    stream = TaskEventStream(store, hub, task_id, after)
    stream.target(root.id, task.id if task.parent_id is not None else None)
    return stream, root.created_by


@dataclass(frozen=True)
class Recheck:
    """How the stream checks, now and then, that its caller may still read the task."""

    security: Security
    token: str
    owner: UUID
    interval_s: float

    async def allows(self) -> bool:
        try:
            caller = await self.security.session_checks.authenticate(self.token)
        except Unauthorized:
            return False
        return caller.can_on(self.owner, TASKS_READ)


async def _messages(stream: TaskEventStream, recheck: Recheck) -> AsyncIterator[ServerSentEvent]:
    runner = asyncio.create_task(stream.run(), name=f"sse-stream-{stream.task_id}")
    loop = asyncio.get_running_loop()
    next_check = loop.time() + recheck.interval_s
    try:
        while True:
            if loop.time() >= next_check:
                # An expired token, an ended session or a lost right ends the stream (as
                # it closes a WebSocket); the client reconnects with Last-Event-ID.
                if not await recheck.allows():
                    log.info("event stream ended: the caller may no longer read the task")
                    return
                next_check = loop.time() + recheck.interval_s
            try:
                async with asyncio.timeout_at(next_check):
                    event = await stream.queue.get()
            except TimeoutError:
                if runner.done() and stream.queue.empty():
                    break  # it failed without room to say so: `await runner` raises
                continue
            if event is None:
                break
            yield ServerSentEvent(data=event_text(event), id=str(event.seq))
        await runner  # raises what ended it early, if anything did
    finally:
        if not runner.done():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner


_STREAM_RESPONSE: dict[int | str, Any] = {
    200: {
        "description": (
            "A stream of Server-Sent Events: each event as `id: <seq>` and "
            "`data: <Event JSON>`, with keep-alive comments (`: ping …`) between them."
        ),
        "content": {"text/event-stream": {"schema": {"type": "string"}, "example": _EXAMPLE}},
    }
}


@router.get(
    "/{task_id}/events/stream",
    summary="Stream a task's events (Server-Sent Events)",
    description=(
        "Replays the events with `seq` greater than `Last-Event-ID` (or `after`), then "
        "streams new ones as they happen, with no gap and no duplicate; a client that "
        "reconnects with the last `id` it saw resumes exactly there. Keep-alive comments "
        "go out while nothing happens. The stream ends once the task and all its subtasks "
        "have finished and every event is sent. For a subtask: only its events.\n\n"
        "`curl -N -H 'Authorization: Bearer …' …/api/v1/tasks/{id}/events/stream`"
    ),
    response_model=None,
    response_class=EventSourceResponse,
    responses={
        **_STREAM_RESPONSE,
        **error_responses(
            ErrorCode.UNAUTHORIZED,
            ErrorCode.TOKEN_EXPIRED,
            ErrorCode.RATE_LIMITED,
            (ErrorCode.NOT_FOUND, "task 6f1c0b5e-3c9e-4a8e-9d7a-2f4b1e6c8a10 not found"),
            (ErrorCode.VALIDATION_ERROR, "Last-Event-ID: Input should be a valid integer"),
        ),
    },
)
async def stream_events(
    task_id: UUID,
    caller: CurrentUser,
    services: ServicesDep,
    request: Request,
    after: Annotated[
        int, Query(ge=0, description="Send the events after this `seq` (0: all of them).")
    ] = 0,
    last_event_id: Annotated[
        int | None,
        Header(
            alias="Last-Event-ID",
            ge=0,
            description="The last `id` the client received; takes precedence over `after`.",
        ),
    ] = None,
) -> EventSourceResponse:
    hub: EventHub = request.app.state.hub
    start = last_event_id if last_event_id is not None else after
    stream, owner = await _open(services.store, hub, caller, task_id, start)
    token = bearer_token(request.headers, {})
    assert services.security is not None and token is not None  # CurrentUser checked both
    recheck = Recheck(services.security, token, owner, services.settings.ws_heartbeat_s)
    return EventSourceResponse(
        _messages(stream, recheck),
        ping=services.settings.sse_keepalive_s,
        # (It also sends `Cache-Control: no-store` and `X-Accel-Buffering: no`, so proxies
        # such as nginx pass each event on at once.)
        send_timeout=SEND_TIMEOUT_S,
    )
