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
