"""The service on a real uvicorn on loopback, in the test's event loop, and real clients.

```python
async with serve(app, settings) as server:
    user, token = await server.login_new_user(Role.DEVELOPER)
    async with server.http(token) as http: ...
    async with server.websocket(token) as socket: ...
```
"""

from __future__ import annotations

import asyncio
import json
import socket as sockets
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import uvicorn
import websockets
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection

from devteam.app import server_config
from devteam.broker.channels import events_channel
from devteam.domain.enums import TERMINAL_STATUSES, Role
from devteam.domain.tasks import Task
from devteam.domain.users import User
from devteam.services import Services
from devteam.settings import Settings
from tests.auth import PASSWORD, add_user

TERMINAL_EVENTS = {"task.completed", "task.failed", "task.cancelled"}


@dataclass
class LiveServer:
    app: FastAPI
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/ws"

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    async def finished(self, task_id: UUID | str, timeout: float = 20.0) -> Task:
        return await finished(self.services, task_id, timeout)

    @asynccontextmanager
    async def http(self, token: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10) as client:
            yield client

    async def login_new_user(self, role: Role = Role.DEVELOPER) -> tuple[User, str]:
        user = await add_user(self.app, role)
        return user, await login(self.url, user.username)

    @asynccontextmanager
    async def websocket(
        self, token: str, *, receive_buffer: int | None = None, **options: Any
    ) -> AsyncIterator[ClientConnection]:
        """A client connection; `receive_buffer` shrinks its socket's receive buffer
        (SO_RCVBUF), so a client that stops reading backs up to the server sooner."""
        options.setdefault("open_timeout", 5)
        options.setdefault("close_timeout", 2)
        if receive_buffer is not None:
            raw = sockets.socket(sockets.AF_INET, sockets.SOCK_STREAM)
            raw.setsockopt(sockets.SOL_SOCKET, sockets.SO_RCVBUF, receive_buffer)
            raw.setblocking(False)
            await asyncio.get_running_loop().sock_connect(raw, ("127.0.0.1", self.port))
            options["sock"] = raw
        async with websockets.connect(
            self.ws_url,
            additional_headers={"Authorization": f"Bearer {token}"},
            proxy=None,
            **options,
        ) as socket:
            yield socket


async def finished(services: Services, task_id: UUID | str, timeout: float = 20.0) -> Task:
    """Wait, on the task's live events, until it reaches a terminal status."""
    return await reaches(services, task_id, TERMINAL_STATUSES, timeout)


async def reaches(
    services: Services, task_id: UUID | str, statuses: Collection[str], timeout: float = 20.0
) -> Task:
    """Wait, on the task's live events, until it is in one of `statuses`."""
    task_id = UUID(str(task_id))
    changed = asyncio.Event()
    subscription = await services.broker.pubsub.subscribe(
        events_channel(task_id), lambda _: changed.set()
    )
    try:
        async with asyncio.timeout(timeout):
            while True:
                changed.clear()
                async with services.store.read() as tx:
                    task = await tx.tasks.get(task_id)
                assert task is not None
                if task.status in statuses:
                    return task
                await changed.wait()
    finally:
        await subscription.close()


async def login(url: str, username: str, password: str = PASSWORD) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.post(
            "/api/v1/auth/token", data={"username": username, "password": password}
        )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@asynccontextmanager
async def serve(
    app: FastAPI, settings: Settings, *, send_buffer: int | None = None
) -> AsyncIterator[LiveServer]:
    """Run `app` under uvicorn on a free loopback port until the block ends.

    `send_buffer` fixes the kernel send buffer (SO_SNDBUF) of its connections: on
    loopback it otherwise grows to megabytes, hiding a client that stopped reading.
    """
    listener = sockets.socket(sockets.AF_INET, sockets.SOCK_STREAM)
    listener.setsockopt(sockets.SOL_SOCKET, sockets.SO_REUSEADDR, 1)
    if send_buffer is not None:
        # Accepted connections inherit the listening socket's buffer sizes.
        listener.setsockopt(sockets.SOL_SOCKET, sockets.SO_SNDBUF, send_buffer)
    listener.bind(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])
    server = uvicorn.Server(server_config(app, settings, host="127.0.0.1", port=port))
    running = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        async with asyncio.timeout(20):
            # uvicorn offers no start-up event to await; its flag is checked briefly.
            while not server.started:
                if running.done():
                    running.result()
                    raise RuntimeError("uvicorn stopped during start-up")
                await asyncio.sleep(0.01)
        yield LiveServer(app, port)
    finally:
        server.should_exit = True
        await running
        listener.close()


async def send(socket: ClientConnection, **message: Any) -> None:
    await socket.send(json.dumps(message))


async def receive(socket: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    """The next message that is not a heartbeat."""
    while True:
        raw = await asyncio.wait_for(socket.recv(), timeout)
        message: dict[str, Any] = json.loads(raw)
        if message["type"] != "heartbeat":
            return message


async def events_until_end(
    socket: ClientConnection, task_id: str, timeout: float = 20.0
) -> list[dict[str, Any]]:
    """Event messages of `task_id` until its root's terminal event (included)."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            message = await receive(socket, timeout)
            if message["type"] != "event" or message["task_id"] != task_id:
                continue
            event = message["event"]
            seen.append(event)
            if event["type"] in TERMINAL_EVENTS and event["subtask_id"] is None:
                return seen
