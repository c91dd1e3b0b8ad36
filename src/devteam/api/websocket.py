"""`GET /api/v1/ws`: live task events over WebSocket, resumable without gap or duplicate.

The protocol is in docs/api.md. How this server keeps its promises:

- **Replay, then live, no gap, no duplicate.** Each subscription is an
  `EventFollower` (api/follow.py, shared with the Server-Sent Events stream): it
  listens to the task's live events, replays the events table from `after`, then
  streams what arrived live, dropping every event whose `seq` it already sent and
  filling any gap from the table.
- **Fan-out costs little per subscriber.** Each event is serialized once for all
  the subscriptions that send it (under `devteam serve`, as a whole WebSocket
  frame: api/wsframes.py), and while a subscription is idle and in order, the
  hub's callback hands the next events on itself, without waking the
  subscription's task: it writes their frames straight to the connection's
  transport when nothing is queued before them and the transport takes more,
  and queues them in the connection's outbox otherwise. The sender writes all
  that is queued at each wake-up in one write.
- **The server never waits on a slow client.** Each connection has a bounded
  queue of outgoing messages, drained by its own sender task. A subscription that
  finds the queue full waits at most `ws_lag_timeout_s`; then it stops and the
  client gets `{"type": "lagged", "task_id", "last_seq"}` after the events already
  queued, and resubscribes with `after = last_seq`. Memory per connection is
  bounded by the queue, the live buffers and the subscription limit.
- **Authentication** is checked at the handshake (bearer header or `access_token`
  query parameter; a bad token closes with 4401, too many connections with 4429)
  and again at each heartbeat: a token that expired, a session that ended or a
  user deactivated closes the connection with 4401, and a subscription the caller
  may no longer read ends with a `not_found` error. The first heartbeat of a
  connection comes at a random point of the second half of the interval, so the
  checks of many clients that connected together are spread out.

Beyond the base protocol, the server also sends `{"type": "unsubscribed", "task_id"}` to
confirm an unsubscribe (no event of that task follows it) and a periodic
`{"type": "heartbeat"}`; events carry the subscription's `task_id` at the top
level; errors about a task carry its `task_id`. Clients ignore types they do not
know. Subscribing to a subtask streams only that subtask's events (numbered in
its root task's sequence).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, WebSocket
from pydantic import BaseModel, Field, StrictInt, TypeAdapter, ValidationError

from devteam.api.follow import EventFollower
from devteam.api.hub import EventHub
from devteam.api.security import authenticate_websocket, bearer_token
from devteam.api.validation import HostileInput, loads_strict
from devteam.api.wsframes import EXTENSION as FRAMES
from devteam.api.wsframes import FrameWriter, text_frame
from devteam.domain.errors import (
    DevTeamError,
    ErrorCode,
    Forbidden,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
)
from devteam.domain.events import MAX_SEQ, Event
from devteam.domain.permissions import TASKS_READ
from devteam.domain.tasks import Task
from devteam.observability.logging import get_logger
from devteam.observability.metrics import WS_CONNECTIONS, WS_DROPS, WS_MESSAGES
from devteam.security import Principal, Security
from devteam.services import Services
from devteam.settings import Settings
from devteam.storage import Store

log = get_logger(__name__)

router = APIRouter()

PATH = "/api/v1/ws"
CONTROL_SLACK = 16
"""Room beyond the queue size for control messages (acknowledgements, errors, lagged)."""
CLOSE_TIMEOUT_S = 5.0


class CloseCode:
    """WebSocket close codes the server uses."""

    NORMAL = 1000
    POLICY_VIOLATION = 1008
    """The client let too many of the server's messages pile up."""
    MESSAGE_TOO_BIG = 1009
    SERVICE_RESTART = 1012
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    """A single sign-on user with no role here, or deactivated."""
    RATE_LIMITED = 4429


class StreamState(StrEnum):
    """Where one subscription is in its life."""

    STARTING = "starting"
    """Looking the task up and subscribing to its live events."""
    REPLAYING = "replaying"
    LIVE = "live"
    ENDED = "ended"


# -- client messages -------------------------------------------------------------------


class SubscribeIn(BaseModel):
    type: Literal["subscribe"]
    task_id: UUID
    after: Annotated[StrictInt, Field(ge=0, le=MAX_SEQ)] = 0
    """Replay events with `seq` greater than this (the last `seq` the client has)."""


class UnsubscribeIn(BaseModel):
    type: Literal["unsubscribe"]
    task_id: UUID


class PingIn(BaseModel):
    type: Literal["ping"]


ClientMessage = Annotated[SubscribeIn | UnsubscribeIn | PingIn, Field(discriminator="type")]
_client_message: TypeAdapter[SubscribeIn | UnsubscribeIn | PingIn] = TypeAdapter(ClientMessage)


def _parse_problem(error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return "type must be one of: subscribe, unsubscribe, ping"
    field = ".".join(str(p) for p in first["loc"][1:]) or "message"
    return f"{field}: {first['msg']}"


# -- the outgoing queue -----------------------------------------------------------------


Payload = str | bytes
"""A message's JSON text (sent through ASGI), or its encoded frame (see api/wsframes.py)."""


class Outbox:
    """Messages waiting for a connection's sender, bounded.

    Events wait (with a deadline) for room below `capacity`; control messages may
    use `slack` more, and beyond that the client is not reading at all.
    """

    def __init__(self, capacity: int, slack: int) -> None:
        self.items: deque[tuple[str, Payload]] = deque()
        """(kind, payload), oldest first: read it, change it only through the methods."""
        self._capacity = capacity
        self._hard_limit = capacity + slack
        self._not_empty = asyncio.Event()
        self._has_room = asyncio.Event()
        self._has_room.set()

    def __len__(self) -> int:
        return len(self.items)

    @property
    def room(self) -> int:
        """Events that fit now, without waiting."""
        return self._capacity - len(self.items)

    def offer_events(self, texts: list[Payload]) -> None:
        """Queue events that fit now (the caller checked `room`)."""
        for text in texts:
            self.items.append(("event", text))
        self._not_empty.set()

    async def put_event(self, text: Payload, timeout: float) -> bool:
        """Queue an event; False when no room came within `timeout` seconds."""
        if len(self.items) < self._capacity:
            self._push("event", text)
            return True
        try:
            async with asyncio.timeout(timeout):
                while len(self.items) >= self._capacity:
                    self._has_room.clear()
                    await self._has_room.wait()
        except TimeoutError:
            return False
        self._push("event", text)
        return True

    def put_control(self, kind: str, message: Payload) -> bool:
        """Queue a control message; False when even the slack is used up."""
        if len(self.items) >= self._hard_limit:
            return False
        self._push(kind, message)
        return True

    def _push(self, kind: str, text: Payload) -> None:
        self.items.append((kind, text))
        self._not_empty.set()

    async def get(self) -> tuple[str, Payload]:
        while not self.items:
            self._not_empty.clear()
            await self._not_empty.wait()
        item = self.items.popleft()
        if len(self.items) < self._capacity:
            self._has_room.set()
        return item

    async def wait(self) -> None:
        """Until something is queued."""
        while not self.items:
            self._not_empty.clear()
            await self._not_empty.wait()

    def take_all(self) -> list[tuple[str, Payload]]:
        """Everything queued, oldest first, leaving the outbox empty."""
        items = list(self.items)
        self.items.clear()
        self._has_room.set()
        return items


# -- one subscription -------------------------------------------------------------------

EVENT_TEXTS = 4096
"""Events whose JSON is kept for the subscriptions that send them next."""
_event_texts: dict[UUID, str] = {}


def event_text(event: Event) -> str:
    """The event as JSON, made once however many subscriptions send it."""
    text = _event_texts.get(event.id)
    if text is None:
        if len(_event_texts) >= EVENT_TEXTS:
            del _event_texts[next(iter(_event_texts))]  # the oldest
        text = _event_texts[event.id] = event.model_dump_json()
    return text


EVENT_FRAMES = 4096
"""Event messages kept as encoded frames, per subscribed task, for the next subscriptions."""
_event_frames: dict[tuple[str, int], bytes] = {}


def event_frame(event: Event, prefix: str) -> bytes:
    """The frame of `event` as sent to the subscriptions with this `prefix`, encoded once.

    The prefix names the subscribed task, whose root numbers its events: (prefix,
    seq) names one message (and hashes faster than the event's id).
    """
    key = (prefix, event.seq)
    frame = _event_frames.get(key)
    if frame is None:
        if len(_event_frames) >= EVENT_FRAMES:
            del _event_frames[next(iter(_event_frames))]  # the oldest
        frame = _event_frames[key] = text_frame(prefix + event_text(event) + "}")
    return frame


class _Batch:
    """One published batch of events, as the subscriptions with one prefix get it.

    The hub hands the same list to every subscription of the task, one after the
    other: the batch is encoded and checked once, for the first of them.
    """

    __slots__ = ("events", "first", "frames", "last", "prefix", "texts", "written")

    def __init__(self, events: list[Event], prefix: str, texts: list[Payload]) -> None:
        self.events = events
        self.prefix = prefix
        self.first = events[0].seq if events else 0
        """The `seq` of the first event: the batch goes to subscriptions at `first - 1`."""
        self.last = events[-1].seq if events else 0
        self.texts = texts
        """Each event's frame, to queue."""
        self.frames = b"".join(texts)  # type: ignore[arg-type]
        """All of them, to write at once."""
        self.written = 0
        """Subscriptions that had the batch written straight to their transport."""

    def count_written(self) -> None:
        _sent("event").inc(self.written * len(self.texts))


_batch = _Batch([], "", [])
"""The last batch encoded, for the next subscription it is handed to."""


def _batch_of(events: list[Event], prefix: str) -> _Batch | None:
    """`events` encoded as frames for `prefix`; None unless their `seq`s follow each other."""
    global _batch
    if not events:
        return None
    seq = events[0].seq - 1
    for event in events:
        if event.seq != seq + 1:
            return None
        seq = event.seq
    batch = _batch = _Batch(events, prefix, [event_frame(event, prefix) for event in events])
    # Counted once per turn of the event loop, after every subscription had its turn.
    asyncio.get_running_loop().call_soon(batch.count_written)
    return batch


class Lagged(Exception):
    """The client did not make room for this subscription's next event in time."""


@dataclass(frozen=True)
class Limits:
    queue_size: int
    lag_timeout_s: float
    heartbeat_s: float
    max_message_bytes: int
    max_subscriptions: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            queue_size=settings.ws_queue_size,
            lag_timeout_s=settings.ws_lag_timeout_s,
            heartbeat_s=settings.ws_heartbeat_s,
            max_message_bytes=settings.ws_max_message_bytes,
            max_subscriptions=settings.ws_max_subscriptions,
        )


class TaskStream(EventFollower):
    """One subscription of a connection: replays, then follows, one task's events."""

    def __init__(self, connection: Connection, task_id: UUID, after: int) -> None:
        super().__init__(connection.store, connection.hub, task_id, after)
        self.connection = connection
        self.state = StreamState.STARTING
        self.owner: UUID | None = None
        self._prefix = json.dumps({"type": "event", "task_id": str(task_id)})[:-1] + ', "event": '
        self._writer: FrameWriter | None = None
        """Set when every event of the root goes out as a frame written to the transport:
        the hub's batches then go out as they are, encoded once for all subscriptions."""
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"ws-stream-{self.task_id}")

    async def stop(self) -> None:
        self.stop_fast_path()  # nothing more goes out, even before the task sees the cancel
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def target(self, root_id: UUID, subtask_id: UUID | None) -> None:
        super().target(root_id, subtask_id)
        if subtask_id is None:
            self._writer = self.connection.frames

    def deliver_now(self, events: list[Event]) -> bool:
        """Send or queue `events` at once if they follow `last` without a gap and all fit.

        With nothing queued before them and the transport taking more, their frames
        are written straight to it. Otherwise, queue nothing and return False: the
        task sorts them out.
        """
        writer = self._writer
        if writer is None:
            return self._deliver_some(events)
        batch = _batch
        if batch.events is not events or batch.prefix != self._prefix:
            found = _batch_of(events, self._prefix)
            if found is None:
                return False  # not in order: the task sorts them out
            batch = found
        if batch.first != self.last + 1:
            return False
        outbox = self.connection.outbox
        if not outbox.items and writer.writable:
            writer.send(batch.frames)
            batch.written += 1
        elif len(batch.texts) <= outbox.room:
            outbox.offer_events(batch.texts)
        else:
            return False
        self.last = batch.last
        return True

    def _deliver_some(self, events: list[Event]) -> bool:
        """`deliver_now` for a subtask's subscription, or without a frame writer."""
        texts: list[Payload] = []
        seq = self.last
        for event in events:
            if event.seq != seq + 1:
                return False
            seq = event.seq
            if self.wants(event):
                texts.append(self._message(event))
        connection = self.connection
        if not connection.write_now(texts):
            outbox = connection.outbox
            if len(texts) > outbox.room:
                return False
            outbox.offer_events(texts)
        self.last = seq
        return True

    def _message(self, event: Event) -> Payload:
        if self.connection.frames is not None:
            return event_frame(event, self._prefix)
        return self._prefix + event_text(event) + "}"

    async def _run(self) -> None:
        connection = self.connection
        try:
            if not await self._authorize():
                connection.not_found(self.task_id)
                return
            listening = await self.listen()
            try:
                connection.control(
                    "subscribed", {"task_id": str(self.task_id), "after": self.after}
                )
                self.state = StreamState.REPLAYING
                await self.replay()
                self.state = StreamState.LIVE
                await self.follow()
            finally:
                await listening.close()
        except Lagged:
            WS_DROPS.labels("lagged").inc()
            log.info("websocket subscription lagged", task_id=str(self.task_id), last=self.last)
            connection.control("lagged", {"task_id": str(self.task_id), "last_seq": self.last})
        except DevTeamError as exc:
            connection.error(exc.code, exc.message, self.task_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("websocket subscription failed", task_id=str(self.task_id))
            connection.error(
                ErrorCode.INTERNAL_ERROR, "the subscription failed; subscribe again", self.task_id
            )
        finally:
            self.stop_fast_path()
            self.state = StreamState.ENDED
            connection.forget(self)

    async def _authorize(self) -> bool:
        """Look the task up; False when it does not exist or the caller may not read it."""
        store = self.connection.store
        task_id = self.task_id

        async def look_up() -> tuple[Task | None, Task | None]:
            async with store.read() as tx:
                task = await tx.tasks.get(task_id)
                root = task
                if task is not None and task.parent_id is not None:
                    root = await tx.tasks.get(task.root_id)
            return task, root

        # The subscribers of one task, connecting together, share the look-up.
        task, root = await self.connection.hub.reads.read(("task", task_id), look_up)
        if task is None or root is None:
            return False
        self.owner = root.created_by
        self.target(root.id, task.id if task.parent_id is not None else None)
        return self.connection.caller.can_on(self.owner, TASKS_READ)

    async def deliver(self, event: Event) -> None:
        limits = self.connection.limits
        if not await self.connection.outbox.put_event(self._message(event), limits.lag_timeout_s):
            raise Lagged


# -- one connection ---------------------------------------------------------------------


class Connection:
    """One client: a receive loop, a sender, a heartbeat, and its subscriptions."""

    def __init__(
        self,
        websocket: WebSocket,
        caller: Principal,
        token: str,
        *,
        store: Store,
        security: Security,
        hub: EventHub,
        limits: Limits,
    ) -> None:
        self.websocket = websocket
        self.caller = caller
        self.token = token
        self.store = store
        self.security = security
        self.hub = hub
        self.limits = limits
        self.outbox = Outbox(limits.queue_size, 2 * limits.max_subscriptions + CONTROL_SLACK)
        extensions = websocket.scope.get("extensions") or {}
        self.frames: FrameWriter | None = extensions.get(FRAMES)
        """Under `devteam serve`, writes encoded frames straight to the transport."""
        self.streams: dict[UUID, TaskStream] = {}
        self.close_code = CloseCode.NORMAL
        self.close_reason = ""
        self._closing = asyncio.Event()
        self.finished = asyncio.Event()

    # -- outgoing --------------------------------------------------------------------

    def control(self, kind: str, fields: dict[str, Any]) -> None:
        """Queue a control message; a client that reads nothing at all is disconnected."""
        text = json.dumps({"type": kind, **fields})
        message: Payload = text if self.frames is None else text_frame(text)
        if not self.outbox.put_control(kind, message):
            self.overflowed()

    def write_now(self, frames: list[Payload]) -> bool:
        """Write event frames to the transport at once, if they would go out next anyway.

        Only when frames go straight to the transport, nothing is queued before
        them and the transport is below its high-water mark; False otherwise.
        """
        writer = self.frames
        if writer is None or self.outbox.items or not writer.writable:
            return False
        if frames:
            writer.write(frames[0] if len(frames) == 1 else b"".join(frames))  # type: ignore[arg-type]
            _count_written(len(frames))
        return True

    def error(self, code: str, message: str, task_id: UUID | None = None) -> None:
        fields: dict[str, Any] = {"code": str(code), "message": message}
        if task_id is not None:
            fields["task_id"] = str(task_id)
        self.control("error", fields)

    def not_found(self, task_id: UUID) -> None:
        self.error(ErrorCode.NOT_FOUND, f"task {task_id} not found", task_id)

    def overflowed(self) -> None:
        if not self._closing.is_set():
            WS_DROPS.labels("overflow").inc()
            log.info("websocket client reads nothing; closing", user=self.caller.username)
            self.close(CloseCode.POLICY_VIOLATION, "too many messages waiting to be read")

    def close(self, code: int, reason: str) -> None:
        if not self._closing.is_set():
            self.close_code, self.close_reason = code, reason
            self._closing.set()

    def forget(self, stream: TaskStream) -> None:
        if self.streams.get(stream.task_id) is stream:
            del self.streams[stream.task_id]

    # -- loops -----------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until the client leaves or the server closes it."""
        loops = [
            asyncio.create_task(self._receive_loop(), name="ws-receive"),
            asyncio.create_task(self._send_loop(), name="ws-send"),
            asyncio.create_task(self._heartbeat_loop(), name="ws-heartbeat"),
            asyncio.create_task(self._closing.wait(), name="ws-closing"),
        ]
        try:
            done, _ = await asyncio.wait(loops, return_when=asyncio.FIRST_COMPLETED)
            for loop in done:
                if not loop.cancelled() and (error := loop.exception()) is not None:
                    log.error("websocket connection failed", exc_info=error)
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await asyncio.gather(*(s.stop() for s in list(self.streams.values())))
            self.streams.clear()
            if self._closing.is_set():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        self.websocket.close(self.close_code, self.close_reason), CLOSE_TIMEOUT_S
                    )
            self.finished.set()

    async def _receive_loop(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            size = len(text.encode()) if text is not None else len(message.get("bytes") or b"")
            if size > self.limits.max_message_bytes:
                WS_DROPS.labels("too_big").inc()
                self.close(CloseCode.MESSAGE_TOO_BIG, "message too big")
                return
            if text is None:
                WS_MESSAGES.labels("in", "invalid").inc()
                self.error(ErrorCode.BAD_REQUEST, "send JSON text messages")
                continue
            await self._handle(text)

    async def _handle(self, text: str) -> None:
        try:
            payload = loads_strict(text, root="message")
        except HostileInput as exc:
            WS_MESSAGES.labels("in", "invalid").inc()
            self.error(ErrorCode.BAD_REQUEST, f"{'.'.join(exc.loc)}: {exc.message}")
            return
        except ValueError:
            WS_MESSAGES.labels("in", "invalid").inc()
            self.error(ErrorCode.BAD_REQUEST, "the message is not JSON")
            return
        if not isinstance(payload, dict):
            WS_MESSAGES.labels("in", "invalid").inc()
            self.error(ErrorCode.BAD_REQUEST, 'a message is a JSON object: {"type": ...}')
            return
        try:
            message = _client_message.validate_python(payload)
        except ValidationError as exc:
            WS_MESSAGES.labels("in", "invalid").inc()
            self.error(ErrorCode.BAD_REQUEST, _parse_problem(exc), _task_id_of(payload))
            return
        WS_MESSAGES.labels("in", message.type).inc()
        if isinstance(message, PingIn):
            self.control("pong", {})
        elif isinstance(message, SubscribeIn):
            await self._subscribe(message)
        else:
            await self._unsubscribe(message.task_id)

    async def _subscribe(self, message: SubscribeIn) -> None:
        previous = self.streams.get(message.task_id)
        if previous is not None:
            # Subscribing again restarts the stream from the new `after`.
            await previous.stop()
        elif len(self.streams) >= self.limits.max_subscriptions:
            self.error(
                ErrorCode.BAD_REQUEST,
                f"at most {self.limits.max_subscriptions} subscriptions per connection",
                message.task_id,
            )
            return
        stream = TaskStream(self, message.task_id, message.after)
        self.streams[message.task_id] = stream
        stream.start()

    async def _unsubscribe(self, task_id: UUID) -> None:
        # Idempotent: a subscription that already ended (lagged, say) is confirmed too.
        stream = self.streams.pop(task_id, None)
        if stream is not None:
            await stream.stop()
        self.control("unsubscribed", {"task_id": str(task_id)})

    async def _send_loop(self) -> None:
        if self.frames is not None:
            await self._write_loop(self.frames)
            return
        while True:
            kind, text = await self.outbox.get()
            assert isinstance(text, str)
            try:
                await self.websocket.send_text(text)
            except Exception:
                return  # the client is gone; the receive loop sees it too
            _sent(kind).inc()

    async def _write_loop(self, writer: FrameWriter) -> None:
        """Write everything queued at each wake-up, in one write, when the transport takes it."""
        outbox = self.outbox
        while True:
            await outbox.wait()
            if not writer.writable:
                await writer.drained()
                if not writer.open:
                    return  # the client is gone; the receive loop sees it too
                continue
            items = outbox.take_all()
            if not writer.write(b"".join(frame for _, frame in items)):  # type: ignore[misc]
                return
            counts: dict[str, int] = {}
            for kind, _ in items:
                counts[kind] = counts.get(kind, 0) + 1
            for kind, count in counts.items():
                _sent(kind).inc(count)

    async def _heartbeat_loop(self) -> None:
        # The first one comes after a random half to whole interval: clients that
        # connected together (after a restart, say) are not all checked at once,
        # and no token goes unchecked for longer than the interval.
        delay = self.limits.heartbeat_s * random.uniform(0.5, 1.0)
        while True:
            await asyncio.sleep(delay)
            delay = self.limits.heartbeat_s
            try:
                self.caller = await self.security.recheck(self.token)
            except (Unauthorized, Forbidden) as exc:
                WS_DROPS.labels("unauthorized").inc()
                code = CloseCode.FORBIDDEN if isinstance(exc, Forbidden) else CloseCode.UNAUTHORIZED
                self.close(code, exc.message[:100])
                return
            except ServiceUnavailable:
                continue  # the identity provider is unreachable: check again next time
            for stream in list(self.streams.values()):
                if stream.owner is not None and not self.caller.can_on(stream.owner, TASKS_READ):
                    await stream.stop()
                    self.forget(stream)
                    self.not_found(stream.task_id)
            self.control("heartbeat", {})


_SENT: dict[str, Any] = {}


def _sent(kind: str) -> Any:
    """The `devteam_ws_messages_total` counter of messages sent of this kind."""
    counter = _SENT.get(kind)
    if counter is None:
        counter = _SENT[kind] = WS_MESSAGES.labels("out", kind)
    return counter


_written = 0
"""Events written straight to transports, not yet added to the counter."""


def _count_written(count: int) -> None:
    """Count written events, adding them to the counter once per turn of the event loop."""
    global _written
    if not _written:
        asyncio.get_running_loop().call_soon(_flush_written)
    _written += count


def _flush_written() -> None:
    global _written
    count, _written = _written, 0
    _sent("event").inc(count)


def _task_id_of(payload: Any) -> UUID | None:
    if isinstance(payload, dict):
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            return UUID(payload.get("task_id"))
    return None


# -- the route --------------------------------------------------------------------------


class Connections:
    """The connections of this process, so shutdown can end them before the store closes.

    (uvicorn ends its WebSocket connections before the lifespan shutdown; other
    servers may not.)
    """

    def __init__(self) -> None:
        self._open: set[Connection] = set()
        self.closed = False

    def add(self, connection: Connection) -> None:
        self._open.add(connection)

    def discard(self, connection: Connection) -> None:
        self._open.discard(connection)

    def __len__(self) -> int:
        return len(self._open)

    async def close(self, timeout: float = 10.0) -> None:
        self.closed = True
        open_now = list(self._open)
        for connection in open_now:
            connection.close(CloseCode.SERVICE_RESTART, "the server is shutting down")
        if open_now:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(c.finished.wait() for c in open_now)), timeout
                )


@router.websocket(PATH)
async def websocket_endpoint(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    hub: EventHub = websocket.app.state.hub
    connections: Connections = websocket.app.state.ws_connections
    # Accept first: a close before the handshake completes reaches a client as HTTP 403,
    # and the contract promises the close code 4401 for a bad token.
    await websocket.accept()
    if connections.closed:
        await websocket.close(CloseCode.SERVICE_RESTART, "shutting down")
        return
    security = services.security
    if security is None:  # a worker's endpoint serves no WebSocket
        await websocket.close(CloseCode.SERVICE_RESTART, "this process serves no API")
        return
    try:
        caller = await authenticate_websocket(websocket, security)
    except Unauthorized as exc:
        await websocket.close(CloseCode.UNAUTHORIZED, exc.message[:100])
        return
    except Forbidden as exc:
        await websocket.close(CloseCode.FORBIDDEN, exc.message[:100])
        return
    except ServiceUnavailable as exc:
        await websocket.close(CloseCode.SERVICE_RESTART, exc.message[:100])
        return
    except RateLimited:
        await websocket.close(CloseCode.RATE_LIMITED, "too many connections")
        return
    token = bearer_token(websocket.headers, websocket.query_params)
    assert token is not None
    connection = Connection(
        websocket,
        caller,
        token,
        store=services.store,
        security=security,
        hub=hub,
        limits=Limits.of(services.settings),
    )
    connections.add(connection)
    WS_CONNECTIONS.inc()
    try:
        await connection.run()
    finally:
        WS_CONNECTIONS.dec()
        connections.discard(connection)
