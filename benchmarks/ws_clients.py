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
client should, and the lag is counted. The clients do as little as they can per
message, so that the server, not they, is what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from array import array
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

TERMINAL = ("task.completed", "task.failed", "task.cancelled")
HANDSHAKES_AT_ONCE = 50


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


class Subscriber:
    def __init__(self, socket: ClientConnection, latencies: array[float]) -> None:
        self.socket = socket
        self.latencies = latencies
        self.follow: Follow | None = None

    async def subscribe(self, task_id: str) -> Follow:
        self.follow = Follow(task_id)
        await self.socket.send(json.dumps({"type": "subscribe", "task_id": task_id, "after": 0}))
        return self.follow

    async def read(self) -> None:
        loads, now, parse = json.loads, time.time, datetime.fromisoformat
        async for text in self.socket:
            message = loads(text)
            kind = message["type"]
            follow = self.follow
            if follow is None or message.get("task_id") != follow.task_id:
                continue
            if kind == "event":
                event = message["event"]
                seq = event["seq"]
                if seq <= follow.last_seq:
                    follow.duplicates += 1
                    continue
                if seq != follow.last_seq + 1:
                    follow.gaps += 1
                follow.last_seq = seq
                follow.events += 1
                if event["type"] == "task.progress":
                    received = now()
                    committed = parse(event["ts"]).timestamp()
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
                await self.socket.send(
                    json.dumps(
                        {"type": "subscribe", "task_id": follow.task_id, "after": follow.last_seq}
                    )
                )
            elif kind == "error":
                print(json.dumps({"error": message}), flush=True)


async def open_all(url: str, count: int) -> list[ClientConnection]:
    gate = asyncio.Semaphore(HANDSHAKES_AT_ONCE)

    async def one() -> ClientConnection:
        async with gate:
            return await connect(
                url, open_timeout=60, ping_interval=None, max_size=None, compression=None
            )

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def follow_task(
    subscribers: list[Subscriber], latencies: array[float], command: dict[str, Any]
) -> dict[str, Any]:
    del latencies[:]
    follows = [await s.subscribe(command["subscribe"]) for s in subscribers]
    await asyncio.wait_for(asyncio.gather(*(f.subscribed.wait() for f in follows)), 60)
    print(json.dumps({"subscribed": len(follows)}), flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(f.finished.wait() for f in follows)), command.get("timeout", 120)
        )
    for subscriber in subscribers:
        task_id = command["subscribe"]
        await subscriber.socket.send(json.dumps({"type": "unsubscribe", "task_id": task_id}))
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
    sockets = await open_all(url, connections)
    latencies: array[float] = array("d")
    subscribers = [Subscriber(s, latencies) for s in sockets]
    readers = [asyncio.create_task(s.read()) for s in subscribers]
    print(json.dumps({"connected": len(sockets)}), flush=True)
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
        for task in readers:
            task.cancel()
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
