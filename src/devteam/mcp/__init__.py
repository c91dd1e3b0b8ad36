"""The MCP client layer: configured servers reached with timeouts, retries, circuit
breakers, limits, a result cache and fallbacks; and DevTeam's own workspace server.

Agents use `McpManager` (on `Services.mcp`): `call()` a tool, open a `task_scope()`
for servers rooted in a task's worktree, and get a pydantic-ai `toolset()` of the
tools an agent type may use.
"""

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
