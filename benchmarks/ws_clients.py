"""WebSocket subscribers in a process of their own, driven over stdin and stdout.

`python -m benchmarks.ws_clients URL --connections N` opens N connections to URL
(the API.md protocol: `subscribe`, `event`, `lagged`), prints one JSON line per
answer, and takes one JSON command per line on stdin:

- `{"subscribe": TASK_ID, "latencies": PATH, "timeout": S}`: every connection
  subscribes; answers `{"subscribed": N}` once all are confirmed, then
  `{"done": {...}}` once every connection has seen the task end (or `timeout`
  passed), after writing each progress event's commit-to-receipt latency (seconds,
  doubles) to PATH;
- `{"quit": true}`.

A connection that gets `lagged` subscribes again from the last `seq` it saw, as a
client should, and the lag is counted.

The client is a minimal RFC 6455 client on an asyncio protocol: it reads the
server's frames straight from the socket's buffer and does nothing per message
but decode its JSON. A general-purpose client library costs about twice the CPU
per message that the floor's server does, so on a small machine the clients,
not the server, would set the pace. Like wrk for HTTP, this is a load generator:
it does what the measurement needs and no more (no compression, no fragmented
sends; it answers pings and closes).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import struct
import sys
import time
from array import array
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

TERMINAL = ("task.completed", "task.failed", "task.cancelled")
HANDSHAKES_AT_ONCE = 50
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

TEXT, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x8, 0x9, 0xA, 0x0


@dataclass
class Follow:
    """What one connection saw of one task."""

    task_id: str
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    last_seq: int = 0
    events: int = 0
    progress: int = 0
    gaps: int = 0
    duplicates: int = 0
    lagged: int = 0
    first_ts: float = float("inf")
    last_receipt: float = 0.0


def frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (RFC 6455 section 5.2)."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    mask = os.urandom(4)
    repeated = (mask * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        length, "big"
    )
    return header + mask + masked


class Subscriber(asyncio.Protocol):
    def __init__(self, host: str, target: str, latencies: array[float]) -> None:
        self.host = host
        self.target = target
        self.latencies = latencies
        self.key = base64.b64encode(os.urandom(16))
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.buffer = bytearray()
        self.handshaken = False
        self.fragments = bytearray()
        self.follow: Follow | None = None

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        transport.write(
            b"GET " + self.target.encode() + b" HTTP/1.1\r\n"
            b"Host: " + self.host.encode() + b"\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + self.key + b"\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.handshaken and not self._handshake():
            return
        position, size = 0, len(buffer)
        while size - position >= 2:
            first, second = buffer[position], buffer[position + 1]
            length = second & 0x7F
            start = position + 2
            if length == 126:
                if size - start < 2:
                    break
                (length,) = struct.unpack_from("!H", buffer, start)
                start += 2
            elif length == 127:
                if size - start < 8:
                    break
                (length,) = struct.unpack_from("!Q", buffer, start)
                start += 8
            end = start + length
            if end > size:
                break
            self._frame(first, bytes(buffer[start:end]))
            position = end
        del buffer[:position]

    # -- frames ------------------------------------------------------------------------

    def _handshake(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buffer[:end]).decode("latin-1")
        del self.buffer[: end + 4]
        accept = base64.b64encode(hashlib.sha1(self.key + GUID).digest()).decode()
        if not head.startswith("HTTP/1.1 101") or accept not in head:
            self.opened.set_exception(ConnectionError(head.splitlines()[0]))
            assert self.transport is not None
            self.transport.close()
            return False
        self.handshaken = True
        self.opened.set_result(None)
        return True

    def _frame(self, first: int, payload: bytes) -> None:
        opcode = first & 0x0F
        if opcode in (TEXT, CONTINUATION):
            if not first & 0x80:  # not the last fragment
                self.fragments += payload
                return
            if self.fragments:
                payload = bytes(self.fragments + payload)
                self.fragments.clear()
            self._message(payload)
        elif opcode == PING:
            self.send(PONG, payload)
        elif opcode == CLOSE:
            self.send(CLOSE, payload[:2])
            assert self.transport is not None
            self.transport.close()

    def _message(self, payload: bytes) -> None:
        message = json.loads(payload)
        follow = self.follow
        if follow is None or message.get("task_id") != follow.task_id:
            return
        kind = message["type"]
        if kind == "event":
            event = message["event"]
            seq = event["seq"]
            if seq <= follow.last_seq:
                follow.duplicates += 1
                return
            if seq != follow.last_seq + 1:
                follow.gaps += 1
            follow.last_seq = seq
            follow.events += 1
            if event["type"] == "task.progress":
                received = time.time()
                committed = datetime.fromisoformat(event["ts"]).timestamp()
                self.latencies.append(received - committed)
                follow.progress += 1
                follow.first_ts = min(follow.first_ts, committed)
                follow.last_receipt = received
            elif event["type"] in TERMINAL and event.get("subtask_id") is None:
                follow.finished.set()
        elif kind == "subscribed":
            follow.subscribed.set()
        elif kind == "lagged":
            follow.lagged += 1
            self.send_json(
                {"type": "subscribe", "task_id": follow.task_id, "after": follow.last_seq}
            )
        elif kind == "error":
            print(json.dumps({"error": message}), flush=True)

    def send(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame(opcode, payload))

    def send_json(self, message: dict[str, Any]) -> None:
        self.send(TEXT, json.dumps(message).encode())

    def subscribe(self, task_id: str) -> Follow:
        self.follow = Follow(task_id)
        self.send_json({"type": "subscribe", "task_id": task_id, "after": 0})
        return self.follow

    async def close(self) -> None:
        self.send(CLOSE, struct.pack("!H", 1000))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.closed), 5)
        if self.transport is not None:
            self.transport.close()


async def open_all(url: str, count: int, latencies: array[float]) -> list[Subscriber]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    gate = asyncio.Semaphore(HANDSHAKES_AT_ONCE)
    loop = asyncio.get_running_loop()

    async def one() -> Subscriber:
        async with gate:
            _, subscriber = await loop.create_connection(
                lambda: Subscriber(f"{host}:{port}", target, latencies), host, port
            )
            await asyncio.wait_for(subscriber.opened, 60)
            return subscriber

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def follow_task(
    subscribers: list[Subscriber], latencies: array[float], command: dict[str, Any]
) -> dict[str, Any]:
    del latencies[:]
    task_id = command["subscribe"]
    follows = [s.subscribe(task_id) for s in subscribers]
    await asyncio.wait_for(asyncio.gather(*(f.subscribed.wait() for f in follows)), 60)
    print(json.dumps({"subscribed": len(follows)}), flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(f.finished.wait() for f in follows)), command.get("timeout", 120)
        )
    for subscriber in subscribers:
        subscriber.send_json({"type": "unsubscribe", "task_id": task_id})
        subscriber.follow = None
    Path(command["latencies"]).write_bytes(latencies.tobytes())
    return {
        "connections": len(follows),
        "finished": sum(f.finished.is_set() for f in follows),
        "events": sum(f.events for f in follows),
        "progress": sum(f.progress for f in follows),
        "min_progress": min(f.progress for f in follows),
        "gaps": sum(f.gaps for f in follows),
        "duplicates": sum(f.duplicates for f in follows),
        "lagged": sum(f.lagged for f in follows),
        "lagged_connections": sum(1 for f in follows if f.lagged),
        "first_ts": min(f.first_ts for f in follows),
        "last_receipt": max(f.last_receipt for f in follows),
    }


async def main(url: str, connections: int) -> None:
    latencies: array[float] = array("d")
    subscribers = await open_all(url, connections, latencies)
    print(json.dumps({"connected": len(subscribers)}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            command = json.loads(line)
            if command.get("quit"):
                break
            done = await follow_task(subscribers, latencies, command)
            print(json.dumps({"done": done}), flush=True)
    finally:
        await asyncio.gather(*(s.close() for s in subscribers), return_exceptions=True)


def run() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(args.url, args.connections))
    else:
        uvloop.run(main(args.url, args.connections))


if __name__ == "__main__":
    run()
