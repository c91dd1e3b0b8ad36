"""Agents for the browser tests: typed outputs, and steps the task's text asks for.

A marker in the task text, or the root task's metadata, says what the attempt
does before it answers: `[wait:NAME]` (`{"wait": NAME}`) waits until the test
opens the gate `NAME` (`TeamScript.open(NAME)`), `[block]` (`{"block": true}`)
waits until the task is cancelled, `[fail-once]` fails the first attempt with a
retryable error. Each agent type answers with its real
output model's shape, so the UI renders a research report, a codebase report or a
code change with its diff and checks.
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from typing import Any

from devteam.domain.agents import AgentContext, AgentFailed
from devteam.domain.enums import AgentType
from devteam.domain.tasks import TaskResult, TaskSpec, Usage

_WAIT = re.compile(r"\[wait:([A-Za-z0-9_-]+)\]")

DIFF = """\
diff --git a/app/health.py b/app/health.py
new file mode 100644
index 0000000..3b18e51
--- /dev/null
+++ b/app/health.py
@@ -0,0 +1,6 @@
+from fastapi import APIRouter
+
+router = APIRouter()
+
+@router.get("/healthz")
+async def healthz() -> dict[str, str]: return {"status": "ok"}
diff --git a/app/main.py b/app/main.py
index 5d0e2c1..9a7f3b0 100644
--- a/app/main.py
+++ b/app/main.py
@@ -1,4 +1,5 @@
 from fastapi import FastAPI
+from app.health import router as health_router
\x20
-app = FastAPI(title="orders")
+app = FastAPI(title="orders service")
+app.include_router(health_router)
"""

USAGE = Usage(requests=2, input_tokens=1800, output_tokens=420, tool_calls=2, cost_usd=0.0184)


def output_for(agent_type: AgentType, spec: TaskSpec) -> tuple[str, dict[str, Any]]:
    """The output model's name and an instance of it, as JSON."""
    if agent_type == AgentType.RESEARCH:
        return "ResearchReport", {
            "summary": "Serve liveness at /healthz without touching the database.",
            "findings": [
                {
                    "statement": "A liveness probe should not depend on downstream services.",
                    "detail": "Kubernetes restarts the pod when it fails.",
                    "sources": [
                        {
                            "title": "Kubernetes: liveness probes",
                            "url": "https://kubernetes.io/docs/concepts/configuration/liveness-readiness-startup-probes/",
                            "kind": "documentation",
                        },
                        {"title": "not a link", "url": "javascript:alert(1)", "kind": "web"},
                    ],
                }
            ],
            "open_questions": ["Should /healthz be excluded from access logs?"],
            "confidence": "high",
        }
    if agent_type == AgentType.CODEBASE_ANALYZER:
        return "CodebaseReport", {
            "summary": "A FastAPI service with one router and pytest tests.",
            "languages": [{"language": "Python", "files": 12, "lines": 840}],
            "total_files": 15,
            "total_lines": 900,
            "files_measured": 15,
            "source_dirs": ["app"],
            "entry_points": [],
            "dependencies": [
                {
                    "name": "fastapi",
                    "spec": ">=0.115",
                    "ecosystem": "python",
                    "scope": "runtime",
                    "defined_in": "pyproject.toml",
                }
            ],
            "test_layout": {
                "frameworks": ["pytest"],
                "directories": ["tests"],
                "test_files": 4,
                "patterns": ["test_*.py"],
                "config_files": ["pyproject.toml"],
            },
            "conventions": [
                {"tool": "ruff", "kind": "linter", "config_file": "pyproject.toml", "notes": ""}
            ],
            "relevant_files": [{"path": "app/main.py", "reason": "creates the app"}],
            "risks": [],
            "git": {
                "branch": "main",
                "head": "5d0e2c1aa",
                "recent_commits": ["Add orders"],
                "uncommitted_changes": False,
            },
            "analysis": "structural",
        }
    return "CodeChange", {
        "summary": 'Adds GET /healthz returning {"status": "ok"}, with its router.',
        "branch": f"devteam/{spec.id}",
        "base_commit": "5d0e2c1aa0000000000000000000000000000000",
        "head_commit": "9a7f3b0bb0000000000000000000000000000000",
        "files_changed": [
            {"path": "app/health.py", "status": "added", "additions": 6, "deletions": 0},
            {"path": "app/main.py", "status": "modified", "additions": 3, "deletions": 1},
        ],
        "diff": DIFF,
        "tests_added": [],
        "follow_ups": ["Add a readiness probe that checks the database."],
        # Fields the verification loop adds (API.md); rendered when present.
        "checks": [
            {
                "name": "test",
                "command": "python3 -m pytest -q",
                "exit_code": 0,
                "passed": True,
                "was_failing_before": False,
                "duration_s": 1.42,
                "output_tail": "4 passed in 0.31s",
            },
        ],
        "verified": True,
    }


class TeamScript:
    """Gates shared by the agents of one server, opened by the tests."""

    def __init__(self) -> None:
        self._gates: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.waiting: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        """Set when an attempt starts waiting at the gate of that name."""

    def open(self, name: str) -> None:
        self._gates[name].set()

    async def wait(self, name: str) -> None:
        self.waiting[name].set()
        await self._gates[name].wait()

    def agents(self) -> dict[AgentType, TypedAgent]:
        return {agent_type: TypedAgent(agent_type, self) for agent_type in AgentType}


class TypedAgent:
    description = "answers with its output model, after the steps its task text asks for"

    def __init__(self, agent_type: AgentType, script: TeamScript) -> None:
        self.agent_type = agent_type
        self.script = script

    async def execute(self, spec: TaskSpec, context: AgentContext) -> TaskResult:
        await context.progress("reading the task")
        await context.tool_call("workspace", "read_file", "ok", path="app/main.py")
        text = f"{spec.root_task} {spec.task}"
        gates = _WAIT.findall(text) + ([spec.metadata["wait"]] if "wait" in spec.metadata else [])
        for name in dict.fromkeys(gates):
            await context.progress(f"waiting at {name}")
            await self.script.wait(name)
        if "[block]" in text or spec.metadata.get("block"):
            await context.progress("working until cancelled")
            await asyncio.Event().wait()
        if "[fail-once]" in text and spec.attempt == 1:
            raise AgentFailed("tool_error", "the workspace server timed out")
        await context.tool_call("workspace", "write_file", "ok", path="app/health.py")
        name, output = output_for(self.agent_type, spec)
        return TaskResult(
            output=output, summary=f"{spec.key or 'task'} done", usage=USAGE, output_type=name
        )
