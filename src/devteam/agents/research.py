"""The research agent: what is known about doing the task well, with sources.

It works through the research tools granted to it in mcp_servers.yaml (a web
research server such as Perplexity, or a page fetcher as its fallback). When
none can be reached, it still answers from the model's own knowledge, and the
report says so: confidence `low`, and an open question to check the findings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from devteam.agents.base import Attempt, BaseAgent
from devteam.agents.briefing import briefing
from devteam.agents.models import ResearchReport
from devteam.domain.enums import AgentType

if TYPE_CHECKING:
    from pydantic_ai.toolsets import AbstractToolset

NO_TOOLS = (
    "## Tools\nNo research tool can be reached right now. Answer from what you know, "
    "mark every such source as model_knowledge, and list what must be checked before "
    "anyone relies on it."
)
UNCHECKED = (
    "No research tool was available: these findings rest on the model's own knowledge "
    "and need checking against current sources."
)


class ResearchAgent(BaseAgent[ResearchReport]):
    agent_type = AgentType.RESEARCH
    description = (
        "Finds out what the task needs: approaches, APIs, standards, pitfalls; "
        "a report of findings with sources, open questions and a confidence."
    )
    prompt_name = "research_agent"
    output_model = ResearchReport

    async def work(self, attempt: Attempt) -> ResearchReport:
        toolset = self.kit.mcp.toolset(self.agent_type, observer=attempt.observer)
        availability = await toolset.refresh()
        toolsets: list[AbstractToolset[Any]] = []
        if availability.no_tool_available:
            await attempt.context.progress(
                "no research tool is available; answering from the model's knowledge",
                unavailable=availability.unavailable,
            )
        else:
            toolsets.append(toolset)
            await attempt.context.progress("researching", tools=sorted(availability.tools))
        prompt = briefing(
            attempt.spec,
            attempt.context.dependencies,
            limit=self.kit.config.context.max_dependency_chars,
            extra=NO_TOOLS if availability.no_tool_available else "",
        )
        report = await self.ask(attempt, ResearchReport, prompt, toolsets)
        if availability.no_tool_available:
            report = report.model_copy(
                update={"confidence": "low", "open_questions": [*report.open_questions, UNCHECKED]}
            )
        return report
