"""The pydantic-ai toolset: an agent's granted tools, called through the resilient layer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent, models
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from devteam.domain.enums import AgentType
from devteam.mcp.toolset import ToolCall, ToolCallObserver, ToolCallRecord
from devteam.settings import load_config
from tests.fakes.faults import FaultPlan
from tests.integration.mcp.conftest import MakeManager, WorkspaceFolders

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _no_model_requests() -> Iterator[None]:
    allowed = models.ALLOW_MODEL_REQUESTS
    models.ALLOW_MODEL_REQUESTS = False
    yield
    models.ALLOW_MODEL_REQUESTS = allowed


class Recorder(ToolCallObserver):
    def __init__(self) -> None:
        self.started: list[ToolCall] = []
        self.ended: list[ToolCallRecord] = []

    async def before_tool_call(self, call: ToolCall) -> None:
        self.started.append(call)

    async def after_tool_call(self, record: ToolCallRecord) -> None:
        self.ended.append(record)


def scripted(*steps: list[tuple[str, dict[str, Any]]], seen: list[list[str]]) -> FunctionModel:
    """A model that makes the given tool calls, one step per request, then answers with
    what the tools returned; `seen` gets the tool names it was offered at each request."""
    remaining = list(steps)

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append(sorted(tool.name for tool in info.function_tools))
        if remaining:
            calls = remaining.pop(0)
            return ModelResponse(parts=[ToolCallPart(name, args) for name, args in calls])
        returns = [
            f"{part.tool_name}: {part.model_response_str()}"
            for message in messages
            if isinstance(message, ModelRequest)
            for part in message.parts
            if isinstance(part, ToolReturnPart | RetryPromptPart)
        ]
        return ModelResponse(parts=[TextPart("\n".join(returns))])

    return FunctionModel(respond)


def workspace_config(**agents: list[str]) -> dict[str, Any]:
    shipped = load_config(REPO / "config").mcp_servers.servers["workspace"].model_dump()
    return {**shipped, "agents": agents}


async def test_an_agent_uses_its_granted_workspace_tools(
    make_manager: MakeManager, folders: WorkspaceFolders
) -> None:
    manager = make_manager(
        {
            "workspace": workspace_config(
                backend=["*"], codebase_analyzer=["tree", "read_file"], research=[]
            )
        }
    )
    seen: list[list[str]] = []
    recorder = Recorder()
    model = scripted(
        [
            ("read_file", {"path": "README.md"}),
            ("write_file", {"path": "NOTES.md", "content": "n"}),
        ],
        [("read_file", {"path": "../outside/secret.txt"})],
        seen=seen,
    )
    async with manager.task_scope(folders.root) as scope:
        toolset = scope.toolset(AgentType.BACKEND, observer=recorder)
        result = await Agent(model, toolsets=[toolset]).run("Take notes.")

        analyzer = await scope.toolset(AgentType.CODEBASE_ANALYZER).refresh()
        assert sorted(analyzer.tools) == ["read_file", "tree"]
        research = await scope.toolset(AgentType.RESEARCH).refresh()
        assert research.no_tool_available and not research.degraded

    assert seen[0] == [
        "apply_patch",
        "python_symbols",
        "read_file",
        "search_text",
        "tree",
        "write_file",
    ]
    assert "read_file: # Project" in result.output
    assert "write_file: wrote 1 bytes to NOTES.md" in result.output
    assert "'..' is not allowed" in result.output
    assert (folders.root / "NOTES.md").read_text() == "n"

    assert [(c.name, c.server, c.tool) for c in recorder.started] == [
        ("read_file", "workspace", "read_file"),
        ("write_file", "workspace", "write_file"),
        ("read_file", "workspace", "read_file"),
    ]
    assert [(r.outcome, r.served_by) for r in recorder.ended] == [
        ("ok", "workspace"),
        ("ok", "workspace"),
        ("tool_error", "workspace"),
    ]
    assert recorder.ended[2].error is not None and "'..' is not allowed" in recorder.ended[2].error
    assert all(r.duration_s > 0 and r.attempts == 1 for r in recorder.ended)


async def test_failures_reach_the_model_and_the_observer(
    make_manager: MakeManager, tmp_path: Path
) -> None:
    plan = FaultPlan(tmp_path / "fault")
    manager = make_manager({"fault": plan.server_config(agents={"backend": ["work"]})})
    plan.set("error", "crash")
    recorder = Recorder()
    seen: list[list[str]] = []
    model = scripted(
        [("work", {"text": "one"})],
        [("work", {"text": "two"})],
        [("work", {"text": "three"})],
        seen=seen,
    )
    toolset = manager.toolset(AgentType.BACKEND, observer=recorder)
    result = await Agent(model, toolsets=[toolset]).run("Work.")
    assert seen[0] == ["work"]
    assert [r.outcome for r in recorder.ended] == ["tool_error", "unavailable", "ok"]
    lines = result.output.splitlines()
    assert "injected tool error" in lines[0]
    assert "Tool work is unavailable right now" in lines[1]
    assert lines[2] == "work: fault: three"  # the crashed server was started again
    assert plan.calls() == ["error", "crash", "ok"]


async def test_the_observer_can_stop_a_repeated_call(
    make_manager: MakeManager, tmp_path: Path
) -> None:
    class StopRepeats(ToolCallObserver):
        def __init__(self) -> None:
            self.fingerprints: list[str] = []

        async def before_tool_call(self, call: ToolCall) -> None:
            if self.fingerprints.count(call.fingerprint) == 1:
                raise RuntimeError(f"stuck on {call.name}")
            self.fingerprints.append(call.fingerprint)

    plan = FaultPlan(tmp_path / "fault")
    manager = make_manager({"fault": plan.server_config(agents={"backend": ["*"]})})
    model = scripted(
        [("echo", {"text": "a"})],
        [("work", {"text": "a"})],
        [("echo", {"text": "a"})],
        seen=[],
    )
    toolset = manager.toolset(AgentType.BACKEND, observer=StopRepeats())
    with pytest.raises(RuntimeError, match="stuck on echo"):
        await Agent(model, toolsets=[toolset]).run("Loop.")
    assert plan.calls() == ["ok"]  # work ran once; the repeated echo never reached the server


async def test_a_fallback_stands_in_for_an_unavailable_server(
    make_manager: MakeManager, tmp_path: Path
) -> None:
    search, pages = FaultPlan(tmp_path / "s", "search"), FaultPlan(tmp_path / "p", "pages")

    def servers(search_enabled: bool, pages_enabled: bool) -> dict[str, Any]:
        return {
            "search": search.server_config(
                enabled=search_enabled, agents={"research": ["*"]}, fallbacks=[{"server": "pages"}]
            ),
            "pages": pages.server_config(enabled=pages_enabled),
        }

    up = await make_manager(servers(True, True)).toolset(AgentType.RESEARCH).refresh()
    assert sorted(up.tools) == ["echo", "grow", "pid", "work"]
    assert {t.server for t in up.tools.values()} == {"search"}
    assert not up.degraded

    recorder = Recorder()
    manager = make_manager(servers(False, True))
    toolset = manager.toolset(AgentType.RESEARCH, observer=recorder)
    model = scripted([("echo", {"text": "q"})], seen=[])
    result = await Agent(model, toolsets=[toolset]).run("Research.")
    assert result.output == "echo: pages: q"
    assert toolset.availability is not None
    assert toolset.availability.substituted == {"search": "pages"}
    assert recorder.ended[0].served_by == "pages"

    none = await make_manager(servers(False, False)).toolset(AgentType.RESEARCH).refresh()
    assert none.no_tool_available
    assert none.unavailable == {
        "search": "no server could answer search.tools/list (search: disabled in the "
        "configuration); no server could answer pages.tools/list (pages: disabled in the "
        "configuration)"
    }


async def test_tool_names_shared_by_two_servers_are_told_apart(
    make_manager: MakeManager, tmp_path: Path
) -> None:
    one, two = FaultPlan(tmp_path / "1", "one"), FaultPlan(tmp_path / "2", "two")
    manager = make_manager(
        {
            "one": one.server_config(agents={"backend": ["echo"]}),
            "two": two.server_config(agents={"backend": ["echo", "pid"]}),
        }
    )
    toolset = manager.toolset(AgentType.BACKEND)
    model = scripted([("echo", {"text": "a"}), ("two_echo", {"text": "b"})], seen=[])
    result = await Agent(model, toolsets=[toolset]).run("Both.")
    assert result.output.splitlines() == ["echo: one: a", "two_echo: two: b"]
    assert toolset.availability is not None
    assert sorted(toolset.availability.tools) == ["echo", "pid", "two_echo"]
