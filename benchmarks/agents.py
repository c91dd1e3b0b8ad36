"""Agents for benchmarks: they do nothing, or wait, so what is measured is DevTeam."""

from __future__ import annotations

import asyncio

from devteam.domain.agents import AgentContext
from devteam.domain.enums import AgentType
from devteam.domain.tasks import TaskResult, TaskSpec


class InstantAgent:
    description = "returns at once"

    def __init__(self, agent_type: AgentType) -> None:
        self.agent_type = agent_type

    async def execute(self, spec: TaskSpec, context: AgentContext) -> TaskResult:
        return TaskResult(output={"key": spec.key}, summary="done")


class SleepingAgent(InstantAgent):
    description = "waits, then returns"

    def __init__(self, agent_type: AgentType, seconds: float) -> None:
        super().__init__(agent_type)
        self.seconds = seconds

    async def execute(self, spec: TaskSpec, context: AgentContext) -> TaskResult:
        await asyncio.sleep(self.seconds)
        return TaskResult(output={"key": spec.key}, summary="done")


def instant_agents() -> dict[AgentType, InstantAgent]:
    return {t: InstantAgent(t) for t in AgentType}


def sleeping_agents(seconds: float) -> dict[AgentType, InstantAgent]:
    return {t: SleepingAgent(t, seconds) for t in AgentType}


def waiting_agents() -> dict[AgentType, InstantAgent]:
    """Agents that stay busy for an hour: for a worker killed with work in its hands."""
    return sleeping_agents(3600)


class EmittingAgent(InstantAgent):
    """Reports progress events as its task's metadata asks: `{"bench": {"events", "rate"}}`.

    `rate` paces them (events per second, on a fixed schedule, so a late one does
    not delay the rest); without it they go as fast as the service takes them.
    """

    description = "reports progress events, then returns"

    async def execute(self, spec: TaskSpec, context: AgentContext) -> TaskResult:
        plan = spec.metadata.get("bench", {})
        events = int(plan.get("events", 0))
        rate = float(plan.get("rate") or 0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(events):
            if rate:
                delay = start + i / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            await context.progress(f"step {i + 1} of {events}")
        return TaskResult(output={"events": events}, summary="done")


def emitting_agents() -> dict[AgentType, InstantAgent]:
    """For `devteam serve --agents benchmarks.agents:emitting_agents`."""
    return {t: EmittingAgent(t) for t in AgentType}
