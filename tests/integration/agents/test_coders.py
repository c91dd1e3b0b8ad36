"""A coder scripted by the fake LLM writes files through the workspace server in its worktree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devteam.domain.enums import AgentType
from devteam.domain.tasks import TaskResult
from tests.fakes.llm import FakeLLM, call, calls, output
from tests.integration.agents.conftest import MakeTeam, RecordingContext, make_spec
from tests.sample_project import VERSION_ROUTE_PATCH, VERSION_TEST, git

pytestmark = pytest.mark.slow

BACKEND = "Backend coder"


async def test_the_backend_coder_changes_its_worktree_and_returns_the_diff(
    fake_llm: FakeLLM, make_team: MakeTeam, workspaces: Path, tmp_path: Path
) -> None:
    repo = workspaces / "shop"
    user_state = (git(repo, "branch", "--show-current"), git(repo, "rev-parse", "HEAD"))
    team = make_team(llm_url=fake_llm.base_url)
    fake_llm.script(
        BACKEND,
        calls(call("read_file", path="app/main.py"), call("tree", path="tests")),
        calls(
            call("apply_patch", diff=VERSION_ROUTE_PATCH),
            call("write_file", path="tests/test_version.py", content=VERSION_TEST),
            call("write_file", path="../escape.py", content="print('out')\n"),
        ),
        output(
            summary="Added GET /version returning the app version, with a test.",
            follow_ups=["Read the version from package metadata instead of a literal."],
        ),
    )
    analysis = TaskResult(
        output={"relevant_files": [{"path": "app/main.py", "reason": "routes"}]},
        summary="Routes are registered with @route in app/main.py.",
        output_type="CodebaseReport",
    )
    context = RecordingContext({"analysis": analysis})
    spec = make_spec(AgentType.BACKEND)

    result = await team.run(spec, context)

    change = result.output
    assert result.output_type == "CodeChange"
    assert change["branch"] == f"devteam/{spec.id}"
    assert change["base_commit"] == user_state[1].strip()
    assert {(f["path"], f["status"]) for f in change["files_changed"]} == {
        ("app/main.py", "modified"),
        ("tests/test_version.py", "added"),
    }
    assert change["tests_added"] == ["tests/test_version.py"]
    assert change["follow_ups"] == ["Read the version from package metadata instead of a literal."]
    assert '+@route("/version")' in change["diff"]

    # The diff applies to the base commit; the branch holds it; the user's checkout is as it was.
    (tmp_path / "change.diff").write_text(change["diff"])
    git(repo, "apply", "--check", str(tmp_path / "change.diff"))
    assert git(repo, "rev-parse", change["branch"]).strip() == change["head_commit"]
    assert (git(repo, "branch", "--show-current"), git(repo, "rev-parse", "HEAD")) == user_state
    assert git(repo, "status", "--porcelain") == ""
    # Nothing was written outside the worktree, and the worktree is gone.
    assert not (workspaces / ".worktrees" / "escape.py").exists()
    assert sorted(p.name for p in workspaces.iterdir()) == [".worktrees", "shop"]
    assert list((workspaces / ".worktrees").iterdir()) == []

    # What the model was offered and told.
    first = fake_llm.requests_for(BACKEND)[0]
    assert {"write_file", "apply_patch", "read_file", "git_status", "git_diff_unstaged"} <= set(
        first.tool_names
    )
    told = first.text()
    assert "Routes are registered with @route in app/main.py." in told
    assert f"repo_path={(workspaces / '.worktrees' / str(spec.id)).resolve()}" in told
    refused = fake_llm.requests_for(BACKEND)[2].text()
    assert "'..' is not allowed" in refused

    # Each tool call was reported and counted (the calls of one reply run side by side).
    assert sorted((e["tool"], e["outcome"]) for e in context.tool_events) == [
        ("apply_patch", "ok"),
        ("read_file", "ok"),
        ("tree", "ok"),
        ("write_file", "ok"),
        ("write_file", "tool_error"),
    ]
    patched = next(e for e in context.tool_events if e["tool"] == "apply_patch")
    assert patched["arguments"] == {"diff": f"<{len(VERSION_ROUTE_PATCH)} characters>"}
    assert result.usage.tool_calls == 5 and result.usage.requests == 3
    assert [m for m, _ in context.progress_events] == ["worktree ready", "change committed"]
    assert json.loads(json.dumps(change)) == change
