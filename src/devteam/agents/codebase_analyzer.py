"""The codebase analyzer: a structural report of the project, and with an LLM, its story.

The structural scan (`agents/structure.py`) needs no LLM: languages and sizes,
entry points, dependencies, the test layout, conventions, the files the task is
about, and risks, all read through the workspace and git tools of a task scope
rooted in the project's checkout (read-only: the analyzer is granted no tool
that writes). With an LLM configured, the model reads the report and the code
and adds a narrative and what matters for the task at hand.
"""

from __future__ import annotations

import json

from devteam.agents.base import Attempt, BaseAgent
from devteam.agents.briefing import briefing
from devteam.agents.models import AnalysisNarrative, CodebaseReport, RelevantFile
from devteam.agents.structure import ScanTools, StructuralScan
from devteam.domain.enums import AgentType


class CodebaseAnalyzer(BaseAgent[CodebaseReport]):
    agent_type = AgentType.CODEBASE_ANALYZER
    description = (
        "Maps the project's codebase: languages and sizes, entry points, dependencies, "
        "tests, conventions, the files the task touches and its risks. Works without an LLM."
    )
    prompt_name = "codebase_analyzer"
    output_model = CodebaseReport
    needs_llm = False

    async def work(self, attempt: Attempt) -> CodebaseReport:
        spec = attempt.spec
        repo = self.kit.workspaces.require(spec.project_id, "codebase analyzer")
        async with self.kit.mcp.task_scope(repo) as scope:
            await attempt.context.progress("scanning the codebase", project=spec.project_id)
            tools = ScanTools(scope, attempt.context, attempt.meter)
            report = await StructuralScan(tools, self.kit.config.analysis).run(
                f"{spec.task}\n{spec.root_task}"
            )
            await attempt.context.progress(
                "structural scan done", files=report.total_files, lines=report.total_lines
            )
            if not self.kit.llm.configured(self.agent_type):
                return report
            toolset = scope.toolset(self.agent_type, observer=attempt.observer)
            prompt = briefing(
                spec,
                attempt.context.dependencies,
                limit=self.kit.config.context.max_dependency_chars,
                extra="## Structural report of the project\n```json\n"
                + json.dumps(report.model_dump(mode="json"), indent=1)
                + "\n```",
            )
            narrative = await self.ask(attempt, AnalysisNarrative, prompt, [toolset])
        return with_narrative(report, narrative)


def with_narrative(report: CodebaseReport, narrative: AnalysisNarrative) -> CodebaseReport:
    """The structural report with the model's summary, narrative, notes, files and risks."""
    relevant: list[RelevantFile] = list(narrative.relevant_files)
    named = {f.path for f in relevant}
    relevant += [f for f in report.relevant_files if f.path not in named]
    return report.model_copy(
        update={
            "summary": narrative.summary,
            "narrative": narrative.narrative,
            "task_notes": narrative.task_notes,
            "relevant_files": relevant,
            "risks": [*report.risks, *(r for r in narrative.risks if r not in report.risks)],
            "analysis": "structural+llm",
        }
    )
