"""Metrics, logs and last-known health of the calls to each server.

`InstrumentedCaller` sees every attempt (retries are separate attempts): it counts
`devteam_mcp_calls_total{server,tool,outcome}`, times it, logs failures, and keeps
the server's `ServerHealth` for the status the API serves. The breaker and retry
listeners below report state changes and retries the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mcp_types import CallToolResult, Tool

from devteam.mcp.breaker import CircuitState
from devteam.mcp.caller import ToolCaller, WrapperCaller, current_trace
from devteam.mcp.connection import describe
from devteam.mcp.errors import (
    CallNotPermitted,
    CallTimeout,
    ProtocolError,
    Throttled,
    TransportFailure,
)
from devteam.observability.logging import get_logger
from devteam.observability.metrics import (
    MCP_CALLS,
    MCP_CIRCUIT_STATE,
    MCP_CIRCUIT_TRANSITIONS,
    MCP_DURATION,
    MCP_RETRIES,
)

log = get_logger(__name__)

# Outcome label values of `devteam_mcp_calls_total`.
OK = "ok"
TOOL_ERROR = "tool_error"
PROTOCOL_ERROR = "protocol_error"
TIMEOUT = "timeout"
TRANSPORT_ERROR = "transport_error"
CIRCUIT_OPEN = "circuit_open"
THROTTLED = "throttled"
CANCELLED = "cancelled"
ERROR = "error"

_OUTCOMES: list[tuple[type[BaseException], str]] = [
    (CallTimeout, TIMEOUT),
    (TransportFailure, TRANSPORT_ERROR),
    (CallNotPermitted, CIRCUIT_OPEN),
    (Throttled, THROTTLED),
    (ProtocolError, PROTOCOL_ERROR),
    (asyncio.CancelledError, CANCELLED),
]


def outcome_of(error: BaseException) -> str:
    for kind, outcome in _OUTCOMES:
        if isinstance(error, kind):
            return outcome
    return ERROR


@dataclass
class ServerHealth:
    """What the last contact with a server (any of its instances) said."""

    healthy: bool | None = None
    """True when the last contact worked, False when it failed, None before any."""
    last_ok_at: float | None = None
    last_failure_at: float | None = None
    last_error: str | None = None
    tools: list[str] = field(default_factory=list)
    """Tool names of the last listing."""

    def succeeded(self) -> None:
        self.healthy = True
        self.last_ok_at = time.time()

    def failed(self, reason: str) -> None:
        self.healthy = False
        self.last_failure_at = time.time()
        self.last_error = reason


class InstrumentedCaller(WrapperCaller):
    def __init__(self, inner: ToolCaller, health: ServerHealth) -> None:
        super().__init__(inner)
        self.health = health

    async def call_tool(self, tool: str, arguments: Mapping[str, Any]) -> CallToolResult:
        if (trace := current_trace()) is not None:
            trace.attempts += 1
        started = time.perf_counter()
        try:
            result = await self.inner.call_tool(tool, arguments)
        except BaseException as exc:
            self._record(tool, outcome_of(exc), time.perf_counter() - started, exc)
            raise
        self._record(tool, TOOL_ERROR if result.is_error else OK, time.perf_counter() - started)
        return result

    async def list_tools(self) -> list[Tool]:
        try:
            tools = await self.inner.list_tools()
        except (TransportFailure, CallTimeout) as exc:
            self.health.failed(exc.reason)
            raise
        self.health.succeeded()
        self.health.tools = [tool.name for tool in tools]
        return tools

    def _record(
        self, tool: str, outcome: str, duration: float, error: BaseException | None = None
    ) -> None:
        MCP_CALLS.labels(server=self.server, tool=tool, outcome=outcome).inc()
        if outcome not in (CIRCUIT_OPEN, CANCELLED):
            MCP_DURATION.labels(server=self.server).observe(duration)
        if outcome in (OK, TOOL_ERROR, PROTOCOL_ERROR):
            self.health.succeeded()
            log.debug(
                "mcp call", server=self.server, tool=tool, outcome=outcome, duration_s=duration
            )
        elif outcome in (TIMEOUT, TRANSPORT_ERROR):
            reason = error.reason if isinstance(error, TransportFailure | CallTimeout) else ""
            self.health.failed(reason or outcome)
            log.warning(
                "mcp call failed",
                server=self.server,
                tool=tool,
                outcome=outcome,
                duration_s=round(duration, 3),
                error=reason,
            )
        elif outcome == ERROR and error is not None:
            log.error(
                "mcp call raised",
                server=self.server,
                tool=tool,
                error=describe(error),
                exc_info=error,
            )


def record_transition(server: str, old: CircuitState, new: CircuitState) -> None:
    """Breaker listener: the state gauge, the transition counter and a log line."""
    MCP_CIRCUIT_STATE.labels(server=server).set(new.gauge_value)
    MCP_CIRCUIT_TRANSITIONS.labels(server=server, state=new.value).inc()
    level = log.warning if new is CircuitState.OPEN else log.info
    level("mcp circuit " + new.value.replace("_", "-"), server=server, previous=old.value)


def record_retry(server: str, tool: str, attempt: int, error: BaseException, wait: float) -> None:
    """Retry listener: the retry counter and a log line."""
    MCP_RETRIES.labels(server=server).inc()
    log.info(
        "mcp call retried",
        server=server,
        tool=tool,
        failed_attempt=attempt,
        error=describe(error),
        wait_s=round(wait, 3),
    )
