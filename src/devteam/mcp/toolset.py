"""The MCP tools an agent type may use, as a pydantic-ai toolset.

    async with services.mcp.task_scope(worktree) as scope:
        toolset = scope.toolset(AgentType.BACKEND, observer=my_observer)
        result = await agent.run(prompt, toolsets=[toolset])

Every tool call the model makes goes through `McpManager.call`, so it gets the
server's timeouts, retries, breaker, limits, cache, fallbacks and metrics. The
toolset lists, for each server the agent is granted in `config/mcp_servers.yaml`,
the granted tools; when a granted server cannot be reached, its fallback's tools
are offered in its place, and when neither can, nothing is (see
`ToolAvailability.no_tool_available`: e.g. research then marks its report
low-confidence).

Tool names are the servers' own; when two granted servers have a tool of the same
name, the later one is offered as `<server>_<tool>`.

An observer sees each call before it runs (`before_tool_call`, which may raise to
refuse it, e.g. when the same call repeats too often) and after it ends
(`after_tool_call`, with outcome and duration): the agents layer turns these
into `tool.call` events and stuck detection.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mcp_types import CallToolResult, ImageContent, TextContent, Tool
from pydantic_ai import RunContext
from pydantic_ai.exceptions import ModelRetry, ToolFailed
from pydantic_ai.messages import BinaryContent
from pydantic_ai.tools import ToolDefinition
from pydantic_ai.toolsets import AbstractToolset, ToolsetTool
from pydantic_core import SchemaValidator, core_schema

from devteam.domain.enums import AgentType
from devteam.mcp.errors import CircuitOpen, ToolCallFailed, ToolUnavailable
from devteam.mcp.registry import ToolGrant
from devteam.mcp.toolcalls import (
    Outcome,
    ToolCall,
    ToolCallObserver,
    ToolCallRecord,
    call_fingerprint,
)

if TYPE_CHECKING:
    from devteam.mcp.manager import McpManager, TaskScope

__all__ = [
    "McpToolset",
    "Outcome",
    "RoutedTool",
    "ToolAvailability",
    "ToolCall",
    "ToolCallObserver",
    "ToolCallRecord",
    "call_fingerprint",
]

ARGUMENTS_VALIDATOR = SchemaValidator(core_schema.dict_schema(keys_schema=core_schema.str_schema()))
"""The server validates arguments against its own schema; here they only need to be an object."""
_INVALID_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class RoutedTool:
    name: str
    """As offered to the model."""
    server: str
    tool: str
    definition: Tool
    granted_by: str
    """The granted server this tool stands for (differs from `server` for a fallback)."""


@dataclass(frozen=True, slots=True)
class ToolAvailability:
    tools: dict[str, RoutedTool] = field(default_factory=dict)
    substituted: dict[str, str] = field(default_factory=dict)
    """Granted server -> the fallback whose tools are offered instead."""
    unavailable: dict[str, str] = field(default_factory=dict)
    """Granted server -> why neither it nor a fallback offers a tool."""

    @property
    def no_tool_available(self) -> bool:
        """The agent has no tool at all: what it produces rests on the model alone."""
        return not self.tools

    @property
    def degraded(self) -> bool:
        return bool(self.substituted or self.unavailable)


class McpToolset(AbstractToolset[Any]):
    def __init__(
        self,
        manager: McpManager,
        agent_type: AgentType,
        *,
        scope: TaskScope | None = None,
        observer: ToolCallObserver | None = None,
        toolset_id: str | None = None,
    ) -> None:
        self._manager = manager
        self.agent_type = agent_type
        self._scope = scope
        self._observer = observer or ToolCallObserver()
        self._id = toolset_id or f"mcp-{agent_type.value}"
        self._availability: ToolAvailability | None = None

    @property
    def id(self) -> str:
        return self._id

    @property
    def availability(self) -> ToolAvailability | None:
        """What the last listing offered (None before the first)."""
        return self._availability

    async def refresh(self) -> ToolAvailability:
        """List the granted tools now, reaching each granted server (or its fallback)."""
        tools: dict[str, RoutedTool] = {}
        substituted: dict[str, str] = {}
        unavailable: dict[str, str] = {}
        grants = self._manager.registry.grants(self.agent_type)
        # Servers start side by side; names are settled in grant order all the same.
        offers = await asyncio.gather(*(self._offered(g, substituted, unavailable) for g in grants))
        for grant, offered in zip(grants, offers, strict=True):
            for server, definition in offered:
                name = _tool_name(definition.name)
                if name in tools:
                    name = _tool_name(f"{server}_{definition.name}")
                tools[name] = RoutedTool(name, server, definition.name, definition, grant.server)
        self._availability = ToolAvailability(tools, substituted, unavailable)
        return self._availability

    async def get_tools(self, ctx: RunContext[Any]) -> dict[str, ToolsetTool[Any]]:
        availability = await self.refresh()
        return {
            name: ToolsetTool(
                toolset=self,
                tool_def=ToolDefinition(
                    name=name,
                    description=routed.definition.description or routed.definition.title,
                    parameters_json_schema=routed.definition.input_schema,
                    metadata={"mcp_server": routed.server, "mcp_tool": routed.tool},
                ),
                max_retries=ctx.max_retries,
                args_validator=ARGUMENTS_VALIDATOR,
            )
            for name, routed in availability.tools.items()
        }

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[Any], tool: ToolsetTool[Any]
    ) -> Any:
        metadata = tool.tool_def.metadata or {}
        server, mcp_tool = metadata["mcp_server"], metadata["mcp_tool"]
        call = ToolCall(
            name=name,
            server=server,
            tool=mcp_tool,
            arguments=dict(tool_args),
            fingerprint=call_fingerprint(server, mcp_tool, tool_args),
            tool_call_id=ctx.tool_call_id,
        )
        await self._observer.before_tool_call(call)
        started = time.perf_counter()
        try:
            answer = await self._manager.call(server, mcp_tool, tool_args, scope=self._scope)
        except ToolUnavailable as exc:
            outcome: Outcome = "circuit_open" if isinstance(exc, CircuitOpen) else "unavailable"
            await self._after(call, outcome, started, error=exc.message)
            raise ToolFailed(f"Tool {name} is unavailable right now: {exc.message}") from None
        except ToolCallFailed as exc:
            await self._after(call, "refused", started, error=exc.message)
            raise ModelRetry(f"The server refused the call: {exc.message}") from None
        record = ToolCallRecord(
            call=call,
            outcome="tool_error" if answer.is_error else "ok",
            duration_s=time.perf_counter() - started,
            served_by=answer.server,
            fallback=answer.fallback,
            cached=answer.cached,
            attempts=answer.attempts,
            error=answer.text if answer.is_error else None,
        )
        await self._observer.after_tool_call(record)
        if answer.is_error:
            raise ToolFailed(answer.text or f"Tool {name} failed")
        return _for_model(answer.result)

    async def _after(self, call: ToolCall, outcome: Outcome, started: float, *, error: str) -> None:
        await self._observer.after_tool_call(
            ToolCallRecord(
                call=call, outcome=outcome, duration_s=time.perf_counter() - started, error=error
            )
        )

    async def _offered(
        self, grant: ToolGrant, substituted: dict[str, str], unavailable: dict[str, str]
    ) -> list[tuple[str, Tool]]:
        try:
            tools = await self._manager.list_tools(grant.server, scope=self._scope)
        except (ToolUnavailable, ToolCallFailed) as exc:
            reasons = [exc.message]
        else:
            return [(grant.server, t) for t in tools if grant.allows(t.name)]
        spec = self._manager.registry.get(grant.server)
        for fallback in spec.config.fallbacks:
            try:
                tools = await self._manager.list_tools(fallback.server, scope=self._scope)
            except (ToolUnavailable, ToolCallFailed) as exc:
                reasons.append(exc.message)
                continue
            if fallback.tools is None:
                offered = [t for t in tools if grant.allows(t.name)]
            else:
                wanted = {mine for theirs, mine in fallback.tools.items() if grant.allows(theirs)}
                offered = [t for t in tools if t.name in wanted]
            if offered:
                substituted[grant.server] = fallback.server
                return [(fallback.server, t) for t in offered]
        unavailable[grant.server] = "; ".join(reasons)
        return []


def _tool_name(name: str) -> str:
    return _INVALID_NAME_CHARS.sub("_", name)[:64]


def _for_model(result: CallToolResult) -> Any:
    """The answer as the model gets it: structured content when there is some."""
    structured = result.structured_content
    if structured is not None and all(isinstance(b, TextContent) for b in result.content):
        if isinstance(structured, dict) and set(structured) == {"result"}:
            return structured["result"]
        return structured
    parts: list[Any] = []
    for block in result.content:
        if isinstance(block, TextContent):
            parts.append(block.text)
        elif isinstance(block, ImageContent):
            parts.append(
                BinaryContent(data=base64.b64decode(block.data), media_type=block.mime_type)
            )
        else:
            parts.append(
                json.dumps(block.model_dump(mode="json", by_alias=True, exclude_none=True))
            )
    return parts[0] if len(parts) == 1 else parts
