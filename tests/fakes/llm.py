"""A fake OpenAI-compatible chat-completions server, on loopback, scripted by the test.

It speaks the real HTTP protocol (`POST /v1/chat/completions`), so the agents
reach it through pydantic-ai's real `OpenAIChatModel` and the `openai` client:

    async with FakeLLM() as llm:
        llm.script("Backend coder", calls(call("write_file", path="a.py", content="...")),
                   output(summary="Added a.py"))
        settings = make_settings(llm_model="openai-chat:fake", llm_base_url=llm.base_url)

Each conversation is routed to a script by the first Markdown heading of its
system prompt ("# Backend coder" -> "Backend coder"); the replies of a script are
served in order: tool calls, text, the final output (a call of pydantic-ai's
`final_result` tool), malformed output, or HTTP errors such as 429 and 500. A
reply may also be a function of the request it answers (`Deferred`), for replies
that depend on what the agent was told (e.g. the id in its worktree's path).
Every request is recorded, so a test can read what an agent was told.
"""

from __future__ import annotations

import itertools
import json
import socket
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

OUTPUT_TOOL = "final_result"


@dataclass(frozen=True)
class ToolCallSpec:
    name: str
    arguments: str
    """As sent on the wire: a JSON object, or anything at all for malformed output."""


@dataclass(frozen=True)
class Reply:
    input_tokens: int = 100
    output_tokens: int = 20


@dataclass(frozen=True)
class ToolCalls(Reply):
    calls: tuple[ToolCallSpec, ...] = ()


@dataclass(frozen=True)
class Text(Reply):
    content: str = ""


@dataclass(frozen=True)
class HttpError(Reply):
    status: int = 500
    message: str = "the fake server failed"
    headers: dict[str, str] = field(default_factory=dict)


Deferred = Callable[["Recorded"], Reply]
"""A reply made when its request arrives, from that request."""


def call(name: str, /, **arguments: Any) -> ToolCallSpec:
    return ToolCallSpec(name, json.dumps(arguments))


def calls(*specs: ToolCallSpec, input_tokens: int = 100, output_tokens: int = 20) -> ToolCalls:
    return ToolCalls(input_tokens=input_tokens, output_tokens=output_tokens, calls=specs)


def output(*, input_tokens: int = 100, output_tokens: int = 20, **fields: Any) -> ToolCalls:
    """The agent's final answer: a call of the output tool with these fields."""
    final = call(OUTPUT_TOOL, **fields)
    return calls(final, input_tokens=input_tokens, output_tokens=output_tokens)


def malformed(arguments: str = '{"summary": ') -> ToolCalls:
    """A final answer whose arguments are not valid JSON."""
    return calls(ToolCallSpec(OUTPUT_TOOL, arguments))


def rate_limited(retry_after: int = 0) -> HttpError:
    return HttpError(
        status=429,
        message="Rate limit reached for requests",
        headers={"retry-after": str(retry_after)},
    )


def server_error(status: int = 500) -> HttpError:
    return HttpError(status=status, message="The server had an error processing your request")


def system_heading(body: dict[str, Any]) -> str:
    """The first Markdown heading of the system prompt: the route of a conversation."""
    for message in body.get("messages", []):
        if message.get("role") in ("system", "developer"):
            content = message.get("content")
            if isinstance(content, list):
                content = "".join(part.get("text", "") for part in content)
            for line in str(content).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return ""


@dataclass(frozen=True)
class Recorded:
    route: str
    body: dict[str, Any]
    status: int

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    def text(self) -> str:
        """Every message's text content, joined (what the model was told)."""
        parts = []
        for message in self.messages:
            content = message.get("content")
            if isinstance(content, list):
                content = "".join(part.get("text", "") for part in content)
            if content:
                parts.append(str(content))
        return "\n".join(parts)

    @property
    def tool_names(self) -> list[str]:
        return sorted(tool["function"]["name"] for tool in self.body.get("tools", []))


class FakeLLM:
    def __init__(self, route: Callable[[dict[str, Any]], str] = system_heading) -> None:
        self._route = route
        self._scripts: defaultdict[str, deque[Reply | Deferred]] = defaultdict(deque)
        self.requests: list[Recorded] = []
        self._ids = itertools.count(1)
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, route: str, *replies: Reply | Deferred) -> FakeLLM:
        self._scripts[route].extend(replies)
        return self

    def remaining(self, route: str) -> int:
        return len(self._scripts[route])

    def requests_for(self, route: str) -> list[Recorded]:
        return [r for r in self.requests if r.route == route]

    async def _completions(self, request: Request) -> JSONResponse:
        body = await request.json()
        route = self._route(body)
        script = self._scripts.get(route)
        if not script:
            self.requests.append(Recorded(route, body, 400))
            return _error(400, f"no reply is scripted for {route!r}")
        reply = script.popleft()
        if not isinstance(reply, Reply):
            reply = reply(Recorded(route, body, 200))
        if isinstance(reply, HttpError):
            self.requests.append(Recorded(route, body, reply.status))
            return _error(reply.status, reply.message, reply.headers)
        self.requests.append(Recorded(route, body, 200))
        message: dict[str, Any] = {"role": "assistant", "content": None}
        finish = "stop"
        if isinstance(reply, ToolCalls):
            message["tool_calls"] = [
                {
                    "id": f"call_{next(self._ids)}",
                    "type": "function",
                    "function": {"name": spec.name, "arguments": spec.arguments},
                }
                for spec in reply.calls
            ]
            finish = "tool_calls"
        elif isinstance(reply, Text):
            message["content"] = reply.content
        return JSONResponse(
            {
                "id": f"chatcmpl-{next(self._ids)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {
                    "prompt_tokens": reply.input_tokens,
                    "completion_tokens": reply.output_tokens,
                    "total_tokens": reply.input_tokens + reply.output_tokens,
                },
            }
        )

    async def __aenter__(self) -> FakeLLM:
        app = Starlette(routes=[Route("/v1/chat/completions", self._completions, methods=["POST"])])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_config=None, lifespan="off", access_log=False)
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        self._socket, self._server = sock, server
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None and self._socket is not None:
            self._server.should_exit = True
            await self._server.shutdown(sockets=[self._socket])
            self._socket.close()


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": "fake_error", "code": str(status)}},
        status_code=status,
        headers=headers,
    )
