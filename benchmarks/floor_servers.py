"""The floors of the server cases: the least a FastAPI app on the same stack can do.

Run as their own uvicorn processes, like `devteam serve`:

- `submit_app` (case a): `POST /tasks` validates a small body and inserts one
  similar row with one raw asyncpg statement; no auth, no events, no queue.
- `broadcast_app` (case d): WebSocket clients register at `/ws`;
  `POST /broadcast?events=&rate=` sends each message, serialized once, to every
  client in turn, shaped and timestamped like DevTeam's events.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from fastapi import FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, Field

DSN_VARIABLE = "DEVTEAM_BENCH_FLOOR_DSN"

FLOOR_TABLE = """
CREATE TABLE IF NOT EXISTS floor_tasks (
    id uuid PRIMARY KEY,
    created_by uuid NOT NULL,
    status text NOT NULL,
    agent_type text,
    task_type text NOT NULL,
    task text NOT NULL,
    complexity integer NOT NULL,
    priority integer NOT NULL,
    metadata jsonb NOT NULL,
    created_at timestamptz NOT NULL
)
"""
INSERT = """
INSERT INTO floor_tasks
    (id, created_by, status, agent_type, task_type, task, complexity, priority, metadata,
     created_at)
VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7, $8, $9)
"""
OWNER = uuid.uuid4()


# -- (a) submission ---------------------------------------------------------------------


class FloorTask(BaseModel):
    task: Annotated[str, Field(min_length=10, max_length=10_000)]
    complexity: Annotated[int, Field(ge=1, le=10)]
    task_type: str = "feature"
    agent_type: str | None = None
    priority: Annotated[int, Field(ge=1, le=10)] = 5
    metadata: dict[str, Any] = Field(default_factory=dict)


@asynccontextmanager
async def _pool(app: FastAPI) -> AsyncIterator[None]:
    pool = await asyncpg.create_pool(os.environ[DSN_VARIABLE], min_size=10, max_size=10)
    async with pool.acquire() as conn:
        await conn.execute(FLOOR_TABLE)
    app.state.pool = pool
    try:
        yield
    finally:
        await pool.close()


submit_app = FastAPI(lifespan=_pool)


@submit_app.get("/health")
async def submit_health() -> dict[str, str]:
    return {"status": "ok"}


@submit_app.post("/tasks", status_code=202)
async def submit(body: FloorTask, request: Request) -> dict[str, Any]:
    task_id = uuid.uuid4()
    now = datetime.now(UTC)
    await request.app.state.pool.execute(
        INSERT,
        task_id,
        OWNER,
        body.agent_type,
        body.task_type,
        body.task,
        body.complexity,
        body.priority,
        json.dumps(body.metadata),
        now,
    )
    return {"id": task_id, "status": "pending", "created_at": now, **body.model_dump()}


# -- (d) broadcast ----------------------------------------------------------------------

broadcast_app = FastAPI()
_clients: set[WebSocket] = set()


@broadcast_app.get("/health")
async def broadcast_health() -> dict[str, int]:
    return {"clients": len(_clients)}


@broadcast_app.websocket("/ws")
async def follow(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            message = json.loads(await websocket.receive_text())
            if message.get("type") == "subscribe":
                _clients.add(websocket)
                await websocket.send_text(
                    json.dumps({"type": "subscribed", "task_id": message["task_id"], "after": 0})
                )
    except WebSocketDisconnect:
        pass
    finally:
        _clients.discard(websocket)


def _event(task_id: str, seq: int, kind: str, data: dict[str, Any]) -> str:
    """A message as large as DevTeam's, stamped now."""
    return json.dumps(
        {
            "type": "event",
            "task_id": task_id,
            "event": {
                "id": str(uuid.uuid4()),
                "task_id": task_id,
                "subtask_id": None,
                "seq": seq,
                "type": kind,
                "data": data,
                "ts": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            },
        }
    )


async def _send_all(text: str) -> None:
    for client in tuple(_clients):
        try:
            await client.send_text(text)
        except Exception:
            _clients.discard(client)


async def _broadcast(task_id: str, events: int, rate: float | None) -> None:
    start = time.perf_counter()
    for i in range(events):
        if rate:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        data = {"message": f"step {i + 1} of {events}", "key": None}
        await _send_all(_event(task_id, i + 1, "task.progress", data))
    await _send_all(_event(task_id, events + 1, "task.completed", {"status": "completed"}))


@broadcast_app.post("/broadcast", status_code=202)
async def broadcast(
    task_id: str, events: Annotated[int, Query(ge=1)], rate: float | None = None
) -> dict[str, int]:
    """Start sending `events` progress events (at `rate` per second, else at once)."""
    task = asyncio.create_task(_broadcast(task_id, events, rate))
    broadcast_app.state.running = task
    return {"clients": len(_clients)}
