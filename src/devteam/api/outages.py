"""An outage of the database or of Redis is a quick 503, never a 500 or a hung request.

`OutageMiddleware` catches a lost connection that escaped a route. An idempotent read
(GET, HEAD) that has sent nothing yet runs once more: the pool has dropped the dead
connections, so the second run gets a fresh one (a database that restarted or cut its
connections answers again at once). Anything else — a write, or a read that fails
twice — is answered `503 service_unavailable` with `Retry-After`, in the one error
shape, so a client knows to try again rather than that its request was wrong.

(Rate limits handle their own storage: see `devteam.security.ratelimit`.)
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devteam.api.errors import error_body
from devteam.broker.redis import broker_unreachable
from devteam.domain.errors import ErrorCode
from devteam.observability.logging import get_logger
from devteam.storage.database import connection_lost

log = get_logger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD"})
RETRY_AFTER_S = 5
"""`Retry-After` of a 503 answered for a lost connection."""


def unavailable(exc: BaseException) -> bool:
    """Whether `exc` is a lost or unreachable database or broker connection."""
    if isinstance(exc, BaseExceptionGroup):  # from a task group inside the route
        return all(unavailable(inner) for inner in exc.exceptions)
    return connection_lost(exc) or broker_unreachable(exc)


class OutageMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        runs = 2 if scope["method"] in IDEMPOTENT_METHODS else 1
        for run in range(1, runs + 1):
            started = False

            async def tracked(message: Message) -> None:
                nonlocal started
                if message["type"] == "http.response.start":
                    started = True
                await send(message)

            try:
                await self.app(scope, receive, tracked)
                return
            except Exception as exc:
                if started or not unavailable(exc):
                    raise
                again = run < runs
                log.warning(
                    "connection lost",
                    method=scope["method"],
                    path=scope["path"],
                    error=type(exc).__name__,
                    action="retry" if again else "503",
                )
                if not again:
                    await _service_unavailable(send)
                    return


async def _service_unavailable(send: Send) -> None:
    body = json.dumps(
        error_body(
            ErrorCode.SERVICE_UNAVAILABLE,
            "the service lost its connection to its database or broker; try again shortly",
        )
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(RETRY_AFTER_S).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
