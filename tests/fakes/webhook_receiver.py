"""A webhook receiver on loopback that checks signatures as a real one would.

```python
async with WebhookReceiver(secret, answers=[500]) as receiver:
    ...  # a task with webhook {"url": receiver.url}
    first, second = await receiver.deliveries(2)
```

It answers each request with the next status of `answers` (then 204; a 3xx
points `Location` at `/elsewhere`, which records who followed it), verifies
the Standard Webhooks signature with `standardwebhooks.Webhook(secret).verify`,
and records what it got.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import uvicorn
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    payload: Any
    """The body, parsed, when the signature verified; None otherwise."""
    verified: bool
    answered: int


class WebhookReceiver:
    def __init__(
        self, secret: str, *, answers: list[int] | None = None, delays: list[float] | None = None
    ) -> None:
        self.verifier = Webhook(secret)
        self.answers = list(answers or [])
        self.delays = list(delays or [])
        """Seconds to wait before answering each request, in turn (then none)."""
        self.received: list[Received] = []
        self.redirected: list[str] = []
        """Requests that followed a redirect this receiver answered (to `/elsewhere`)."""
        self._arrived = asyncio.Condition()
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None
        self._listener: socket.socket | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        headers = dict(request.headers)
        try:
            payload, verified = self.verifier.verify(body, headers), True
        except WebhookVerificationError:
            payload, verified = None, False
        status = self.answers.pop(0) if self.answers else 204
        if self.delays:
            await asyncio.sleep(self.delays.pop(0))
        async with self._arrived:
            self.received.append(Received(headers, body, payload, verified, status))
            self._arrived.notify_all()
        headers = {"Location": "/elsewhere"} if 300 <= status < 400 else None
        return Response(status_code=status, headers=headers)

    async def _elsewhere(self, request: Request) -> Response:
        self.redirected.append(request.method)
        return Response(status_code=204)

    async def deliveries(self, count: int, timeout: float = 20.0) -> list[Received]:
        """Wait until `count` requests arrived; return them."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count)
            return list(self.received)

    async def __aenter__(self) -> WebhookReceiver:
        app = Starlette(
            routes=[
                Route("/hook", self._hook, methods=["POST"]),
                Route("/elsewhere", self._elsewhere, methods=["GET", "POST"]),
            ]
        )
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._server = uvicorn.Server(
            uvicorn.Config(app, log_config=None, lifespan="off", access_log=False)
        )
        self._serving = asyncio.create_task(self._server.serve(sockets=[self._listener]))
        async with asyncio.timeout(10):
            while not self._server.started:
                if self._serving.done():
                    self._serving.result()
                await asyncio.sleep(0.01)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None and self._serving is not None
        self._server.should_exit = True
        await self._serving
        if self._listener is not None:
            self._listener.close()
