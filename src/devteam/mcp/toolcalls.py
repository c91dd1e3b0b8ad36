"""What an observer of a toolset sees: each tool call before it runs, and how it ended.

Kept apart from the toolset (a pydantic-ai class), so the agents layer can watch
tool calls without loading the LLM stack.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from devteam.mcp.cache import canonical_arguments

Outcome = Literal["ok", "tool_error", "refused", "unavailable", "circuit_open"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call the model made, about to run."""

    name: str
    """The tool's name as the model sees it."""
    server: str
    tool: str
    """The tool's name on `server`."""
    arguments: dict[str, Any]
    fingerprint: str
    """Equal for calls of the same tool with equal arguments (for stuck detection)."""
    tool_call_id: str | None


@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    """How a tool call ended."""

    call: ToolCall
    outcome: Outcome
    """`ok`; `tool_error` (the tool answered with an error); `refused` (the server
    refused the request, e.g. bad arguments); `unavailable` (no server could answer);
    `circuit_open` (the server's breaker refused it and no fallback could answer)."""
    duration_s: float
    served_by: str | None = None
    """The server that answered (a fallback when `fallback`)."""
    fallback: bool = False
    cached: bool = False
    attempts: int = 0
    error: str | None = None


class ToolCallObserver:
    """Sees every tool call of a toolset; override the hooks you need.

    An exception raised by a hook propagates into the agent run: raising from
    `before_tool_call` stops the call (and the run) before it reaches a server.
    """

    async def before_tool_call(self, call: ToolCall) -> None:
        return None

    async def after_tool_call(self, record: ToolCallRecord) -> None:
        return None


def call_fingerprint(server: str, tool: str, arguments: dict[str, Any]) -> str:
    text = f"{server}\n{tool}\n{canonical_arguments(arguments)}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]
