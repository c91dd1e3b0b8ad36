"""Agents for tests: they follow the agent interface and do what the test scripts."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from devteam.domain.agents import AgentContext, AgentFailed
from devteam.domain.enums import AgentType
from devteam.domain.tasks import TaskResult, TaskSpec, Usage


@dataclass
class Step:
    """What one attempt does: wait, report, then fail or succeed."""

    sleep: float = 0.0
    fail: str | None = None
    """Error code to fail with."""
    crash: bool = False
    """Raise an unexpected exception."""
    block: bool = False
    """Wait until cancelled."""
    gate: bool = False
    """Wait until the test opens `ScriptBook.gate`."""
    usage: Usage = field(default_factory=Usage)
    progress: list[str] = field(default_factory=list)
    tool_calls: int = 0
    wait: asyncio.Event | None = None
    """Wait for the test to set this (after the progress and tool calls) before going on."""


@dataclass
class Call:
    spec: TaskSpec
    dependencies: dict[str, TaskResult]


class ScriptedAgent:
    """An agent whose attempts follow a script per task key (default: succeed at once)."""

    description = "an agent scripted by a test"

    def __init__(self, agent_type: AgentType, script: ScriptBook) -> None:
        self.agent_type = agent_type
        self.script = script

    async def execute(self, spec: TaskSpec, context: AgentContext) -> TaskResult:
        key = spec.key or "root"
        self.script.calls.append(Call(spec, dict(context.dependencies)))
        self.script.running.add(spec.id)
        self.script.peak = max(self.script.peak, len(self.script.running))
        try:
            step = self.script.next_step(key, spec.attempt)
            for message in step.progress:
                await context.progress(message)
            for i in range(step.tool_calls):
                await context.tool_call("workspace", "read_file", "ok", path=f"f{i}.py")
            if step.wait is not None:
                await step.wait.wait()
            if step.block:
                self.script.blocked.set()
                await asyncio.Event().wait()
            if step.gate:
                self.script.blocked.set()
                await self.script.gate.wait()
            if step.sleep:
                await asyncio.sleep(step.sleep)
            if step.crash:
                raise RuntimeError(f"{key} crashed")
            if step.fail:
                raise AgentFailed(
                    step.fail, f"{key} failed on attempt {spec.attempt}", usage=step.usage
                )
            return TaskResult(
                output={"key": key, "attempt": spec.attempt, "saw": sorted(context.dependencies)},
                summary=f"{key} done",
                usage=step.usage,
                output_type="Echo",
            )
        finally:
            self.script.running.discard(spec.id)
            self.script.finished[key] += 1


class ScriptBook:
    """Scripts shared by the agents of one test."""

    def __init__(self) -> None:
        self.steps: dict[str, list[Step]] = {}
        self.calls: list[Call] = []
        self.running: set[UUID] = set()
        self.peak = 0
        self.finished: defaultdict[str, int] = defaultdict(int)
        self.blocked = asyncio.Event()
        self.gate = asyncio.Event()

    def on(self, key: str, *steps: Step) -> ScriptBook:
        self.steps[key] = list(steps)
        return self

    def next_step(self, key: str, attempt: int) -> Step:
        steps = self.steps.get(key) or self.steps.get("*") or [Step()]
        return steps[min(attempt, len(steps)) - 1]

    def calls_for(self, key: str) -> list[Call]:
        return [c for c in self.calls if (c.spec.key or "root") == key]

    def agents(self) -> dict[AgentType, ScriptedAgent]:
        return {agent_type: ScriptedAgent(agent_type, self) for agent_type in AgentType}


def count(predicate: Callable[[Any], bool], items: list[Any]) -> int:
    return sum(1 for item in items if predicate(item))
