"""`ToolCaller`: what every layer around an MCP session offers, and its wrapper base.

The session (`McpConnection`) is the innermost caller; each behaviour around it —
breaker, throttle, instrumentation, retries, cache — is a wrapper holding the
caller it wraps, so each can be read, tested and ordered on its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from mcp_types import CallToolResult, Tool


class ToolCaller(Protocol):
    @property
    def server(self) -> str:
        """The configured server name (metrics, breakers and limits are keyed by it)."""
        ...

    async def call_tool(self, tool: str, arguments: Mapping[str, Any]) -> CallToolResult: ...

    async def list_tools(self) -> list[Tool]: ...


class WrapperCaller:
    """Forwards everything to `inner`; subclasses wrap what they change."""

    def __init__(self, inner: ToolCaller) -> None:
        self.inner = inner

    @property
    def server(self) -> str:
        return self.inner.server

    async def call_tool(self, tool: str, arguments: Mapping[str, Any]) -> CallToolResult:
        return await self.inner.call_tool(tool, arguments)

    async def list_tools(self) -> list[Tool]:
        return await self.inner.list_tools()


@dataclass
class CallTrace:
    """What happened inside one logical call, filled in by the wrappers it passed."""

    attempts: int = 0
    """Calls that reached the server (or its breaker); retries make more than one."""
    cached: bool = False
    """Served from the result cache without reaching the server."""
    waited_s: float = 0.0
    """Time spent before requests went out: waiting for a call slot, for room under
    the rate limit, or for a session to open. Not the server's slowness."""


_TRACE: ContextVar[CallTrace | None] = ContextVar("mcp_call_trace", default=None)


@contextmanager
def tracing() -> Iterator[CallTrace]:
    """Collect a `CallTrace` of the calls made inside the block (in this task)."""
    trace = CallTrace()
    token = _TRACE.set(trace)
    try:
        yield trace
    finally:
        _TRACE.reset(token)


def current_trace() -> CallTrace | None:
    return _TRACE.get()
