"""The MCP client layer: configured servers reached with timeouts, retries, circuit
breakers, limits, a result cache and fallbacks; and DevTeam's own workspace server.

Agents use `McpManager` (on `Services.mcp`): `call()` a tool, open a `task_scope()`
for servers rooted in a task's worktree, and get a pydantic-ai `toolset()` of the
tools an agent type may use.

The names below are imported on first use, so that running the workspace server
(`devteam.mcp.workspace`) does not import the client side and pydantic-ai.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devteam.mcp.breaker import CircuitBreaker, CircuitState
    from devteam.mcp.errors import CircuitOpen, ToolCallFailed, ToolUnavailable
    from devteam.mcp.manager import McpManager, ServerStatus, TaskScope, ToolResult
    from devteam.mcp.toolset import (
        McpToolset,
        ToolAvailability,
        ToolCall,
        ToolCallObserver,
        ToolCallRecord,
    )

_EXPORTS = {
    "CircuitBreaker": "devteam.mcp.breaker",
    "CircuitState": "devteam.mcp.breaker",
    "CircuitOpen": "devteam.mcp.errors",
    "ToolCallFailed": "devteam.mcp.errors",
    "ToolUnavailable": "devteam.mcp.errors",
    "McpManager": "devteam.mcp.manager",
    "ServerStatus": "devteam.mcp.manager",
    "TaskScope": "devteam.mcp.manager",
    "ToolResult": "devteam.mcp.manager",
    "McpToolset": "devteam.mcp.toolset",
    "ToolAvailability": "devteam.mcp.toolset",
    "ToolCall": "devteam.mcp.toolset",
    "ToolCallObserver": "devteam.mcp.toolset",
    "ToolCallRecord": "devteam.mcp.toolset",
}

__all__ = [
    "CircuitBreaker",
    "CircuitOpen",
    "CircuitState",
    "McpManager",
    "McpToolset",
    "ServerStatus",
    "TaskScope",
    "ToolAvailability",
    "ToolCall",
    "ToolCallFailed",
    "ToolCallObserver",
    "ToolCallRecord",
    "ToolResult",
    "ToolUnavailable",
]


def __getattr__(name: str) -> Any:
    if (module := _EXPORTS.get(name)) is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
