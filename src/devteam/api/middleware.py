"""Pure ASGI middleware at the edge of every HTTP request.

`EdgeMiddleware` gives each request an id (`X-Request-ID`, echoed when the client
sent a sane one), binds it to the log context, adds the security headers, logs one
line per request, and answers any exception that escaped the app with
`internal_error` — logged with its traceback, never shown to the client.
`BodyLimitMiddleware` refuses bodies over the limit with 413 `payload_too_large`,
whether the client declared the length or streamed it.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devteam.api.errors import error_body
from devteam.domain.errors import ErrorCode
from devteam.observability.logging import clear_context, get_logger, log_context

log = get_logger("devteam.http")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

RequestObserver = Callable[[Scope, int, float], None]
InFlight = Callable[[int], None]
"""Called after each HTTP request with (scope, status code, seconds); used for metrics."""


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        hsts: bool = False,
        observers: list[RequestObserver] | None = None,
        in_flight: InFlight | None = None,
    ) -> None:
        self.app = app
        self.observers = observers if observers is not None else []
        self.in_flight = in_flight
        self.security_headers = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
        ]
        if hsts:
            self.security_headers.append(
                (b"strict-transport-security", b"max-age=63072000; includeSubDomains")
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        request_id = given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = False
        begin = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", request_id.encode()))
                headers.extend(self.security_headers)
                message = {**message, "headers": headers}
            await send(message)

        clear_context()
        if self.in_flight is not None and scope["type"] == "http":
            self.in_flight(1)
        with log_context(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_headers)
            except Exception:
                log.exception("unhandled error", method=scope.get("method"), path=scope["path"])
                if scope["type"] == "http" and not started:
                    await self._internal_error(send_with_headers)
                elif scope["type"] == "http":
                    raise
            finally:
                if scope["type"] == "http":
                    if self.in_flight is not None:
                        self.in_flight(-1)
                    elapsed = time.perf_counter() - begin
                    for observe in self.observers:
                        observe(scope, status, elapsed)
                    log.info(
                        "request",
                        method=scope["method"],
                        path=scope["path"],
                        status=status,
                        ms=round(elapsed * 1000, 2),
                    )
        clear_context()

    @staticmethod
    async def _internal_error(send: Send) -> None:
        body = json.dumps(
            error_body(ErrorCode.INTERNAL_ERROR, "an unexpected error occurred")
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit():
            if int(declared) > self.max_bytes:
                await self._too_large(send)
                return
            # The server reads no more than the declared length as this request's body.
            await self.app(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # An HTTPException passes through FastAPI's body parsing unchanged.
                    raise HTTPException(413, detail=self._message())
            return message

        await self.app(scope, limited_receive, send)

    def _message(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes"

    async def _too_large(self, send: Send) -> None:
        body: dict[str, Any] = error_body(ErrorCode.PAYLOAD_TOO_LARGE, self._message())
        raw = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(raw)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": raw})
