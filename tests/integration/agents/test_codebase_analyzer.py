"""The codebase analyzer with no LLM: a structural report of this very repository."""

from __future__ import annotations

import pytest

from devteam.domain.enums import AgentType
from tests.integration.agents.conftest import REPO, MakeTeam, RecordingContext, make_spec

pytestmark = pytest.mark.slow


async def test_a_structural_report_of_this_repository_without_an_llm(
    make_team: MakeTeam,
) -> None:
    team = make_team(settings={"workspaces_root": REPO.parent})
    spec = make_spec(
        AgentType.CODEBASE_ANALYZER,
        project_id=REPO.name,
        task="Find where the MCP circuit breaker opens and how its state is reported",
    )
    context = RecordingContext()

    result = await team.run(spec, context)

    report = result.output
    assert result.output_type == "CodebaseReport"
    assert report["analysis"] == "structural"
    assert result.model is None and result.prompt_version is None
    assert report["languages"][0]["language"] == "Python"
    assert report["languages"][0]["lines"] > 10_000
    assert report["total_files"] > 100
    assert "src/devteam" in report["source_dirs"]
    assert {
        "name": "devteam",
        "kind": "console_script",
        "target": "devteam.cli:app",
        "defined_in": "pyproject.toml",
    } in report["entry_points"]
    assert any(e["kind"] == "web_app" and e["name"] == "FastAPI" for e in report["entry_points"])
    dependencies = {(d["name"], d["scope"]) for d in report["dependencies"]}
    assert {("fastapi", "runtime"), ("pydantic-ai-slim", "runtime"), ("pytest", "dev")} <= (
        dependencies
    )
    tests = report["test_layout"]
    assert tests["frameworks"] == ["pytest"]
    assert tests["directories"] == ["tests"]
    assert tests["test_files"] > 30
    assert "test_*.py" in tests["patterns"]
    tools = {(c["tool"], c["kind"]) for c in report["conventions"]}
    assert {("ruff", "linter"), ("mypy", "type_checker"), ("pre-commit", "hooks")} <= tools
    mypy = next(c for c in report["conventions"] if c["tool"] == "mypy")
    assert mypy["notes"] == "strict"
    relevant = [f["path"] for f in report["relevant_files"]]
    assert "src/devteam/mcp/breaker.py" in relevant[:5]
    assert report["git"]["head"] is not None and report["git"]["recent_commits"]
    assert "Python project" in report["summary"] and "src/devteam" in report["summary"]

    # Read through the workspace and git tools, reported as tool calls.
    by_tool = {(e["server"], e["tool"]): e["calls"] for e in context.tool_events}
    assert by_tool[("workspace", "read_file")] > 100
    assert ("git", "git_log") in by_tool
    assert result.usage.tool_calls == sum(by_tool.values())
    assert result.usage.requests == 0
