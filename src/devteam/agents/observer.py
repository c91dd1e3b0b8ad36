"""What an attempt does with each tool call: stuck detection, events and usage.

Before a call runs, its fingerprint (tool and arguments) is counted: the N-th
identical call of an attempt (`stuck.max_repeated_tool_calls` in
team_leader.yaml) is refused and the attempt stops with `agent_stuck`. After a
call, a `tool.call` event tells followers what happened and the call counts in
the attempt's usage.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from devteam.agents.metering import UsageMeter
from devteam.domain.agents import AgentContext
from devteam.domain.tasks import Usage
from devteam.mcp.toolcalls import ToolCall, ToolCallObserver, ToolCallRecord

MAX_SHOWN_ARGUMENT = 200
"""Arguments longer than this (file contents, patches) are left out of events."""
MAX_SHOWN_ERROR = 500


class StuckDetected(Exception):
    """The model repeated the same tool call too often."""

    def __init__(self, call: ToolCall, times: int) -> None:
        self.call = call
        self.times = times
        super().__init__(
            f"the same tool call repeated {times} times: {call.server}.{call.tool}"
            f"({shown_arguments(call.arguments)})"
        )


def shown_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """The arguments short enough to show; longer ones only by size."""
    shown: dict[str, Any] = {}
    for name, value in arguments.items():
        text = value if isinstance(value, str) else repr(value)
        shown[name] = value if len(text) <= MAX_SHOWN_ARGUMENT else f"<{len(text)} characters>"
    return shown


class AttemptObserver(ToolCallObserver):
    def __init__(self, context: AgentContext, meter: UsageMeter, max_repeats: int) -> None:
        self.context = context
        self.meter = meter
        self.max_repeats = max_repeats
        self.seen: Counter[str] = Counter()

    async def before_tool_call(self, call: ToolCall) -> None:
        self.seen[call.fingerprint] += 1
        if (times := self.seen[call.fingerprint]) >= self.max_repeats:
            await self.context.tool_call(
                call.server,
                call.tool,
                "stuck",
                arguments=shown_arguments(call.arguments),
                repeated=times,
            )
            raise StuckDetected(call, times)

    async def after_tool_call(self, record: ToolCallRecord) -> None:
        call = record.call
        self.meter.add(Usage(tool_calls=1))
        data: dict[str, Any] = {
            "arguments": shown_arguments(call.arguments),
            "duration_ms": round(record.duration_s * 1000, 1),
        }
        if record.served_by is not None and record.served_by != call.server:
            data["served_by"] = record.served_by
        if record.cached:
            data["cached"] = True
        if record.attempts > 1:
            data["attempts"] = record.attempts
        if record.error:
            data["error"] = record.error[:MAX_SHOWN_ERROR]
        await self.context.tool_call(call.server, call.tool, record.outcome, **data)
