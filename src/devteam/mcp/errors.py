"""Errors of the MCP client layer.

Two families. Inside the layer, each wrapper around a call raises a small,
specific exception (`TransportFailure`, `CallTimeout`, `CallNotPermitted`, …) so
the next wrapper can decide what to do with it: retry, record it in the breaker,
go to a fallback. At the layer's edge (`McpManager.call`) what is left becomes a
`DevTeamError` with a stable code: `tool_unavailable` when no server could
answer (an agent can then say it worked without the tool), `circuit_open` when
the only server's breaker refused the call, `tool_error` when the server refused
the request itself. A tool that answers with an error result is not an
exception at all: that result is returned to the caller.
"""

from __future__ import annotations

from devteam.domain.errors import DevTeamError, ErrorCode


class McpCallError(Exception):
    """A call did not produce an answer from the server."""

    def __init__(self, server: str, message: str) -> None:
        super().__init__(f"{server}: {message}")
        self.server = server
        self.reason = message


class TransportFailure(McpCallError):
    """The server could not be reached, or the connection broke (retried)."""


class CallTimeout(McpCallError):
    """The server did not answer within the timeout (retried)."""


class CallNotPermitted(McpCallError):
    """The server's circuit breaker is open (or half-open with no probe slot free)."""


class Throttled(McpCallError):
    """No free call slot, or no room under the rate limit, within the call's timeout."""


class ServerUnavailable(McpCallError):
    """The server cannot be used at all: disabled, not configured, or needs a task."""


class ProtocolError(McpCallError):
    """The server answered the request with a JSON-RPC error (e.g. invalid arguments).

    That is an answer, not an outage: it is neither retried nor counted against
    the server's breaker.
    """


UNAVAILABLE_ERRORS: tuple[type[McpCallError], ...] = (
    TransportFailure,
    CallTimeout,
    CallNotPermitted,
    Throttled,
    ServerUnavailable,
)
"""Failures after which the next fallback is tried."""


class ToolUnavailable(DevTeamError):
    """No configured server could answer the call: the caller works without the tool."""

    code = ErrorCode.TOOL_UNAVAILABLE
    status_code = 503


class CircuitOpen(ToolUnavailable):
    """The server's circuit breaker is open and it has no fallback that could answer."""

    code = ErrorCode.CIRCUIT_OPEN


class ToolCallFailed(DevTeamError):
    """The server refused the request (a protocol error, e.g. an unknown tool)."""

    code = ErrorCode.TOOL_ERROR
    status_code = 502
