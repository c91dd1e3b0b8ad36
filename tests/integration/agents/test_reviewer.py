"""The reviewer reads the change, its checks and the code through read-only tools."""

from __future__ import annotations

from pathlib import Path

import pytest

from devteam.agents.models import CheckOutcome, CodeChange
from devteam.domain.agents import AgentFailed
from devteam.domain.enums import AgentType
from devteam.domain.tasks import REVIEW_ROUND_KEY, TaskResult
from tests.fakes.llm import FakeLLM, call, calls, output
from tests.integration.agents.conftest import MakeTeam, RecordingContext, make_spec
from tests.sample_project import git, main_with_version

pytestmark = pytest.mark.slow

REVIEWER = "Code reviewer"
FINDING = {
    "file": "app/main.py",
    "line": 22,
    "severity": "major",
    "message": "Read the version from the package metadata, not a literal.",
}


def change_on_a_branch(repo: Path, branch: str, revision: int = 1) -> CodeChange:
    base = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "switch", "-q", "-c", branch)
    (repo / "app" / "main.py").write_text(main_with_version("0.3.0"))
    git(repo, "commit", "-q", "-am", "api: Add GET /version")
    head = git(repo, "rev-parse", "HEAD").strip()
    diff = git(repo, "diff", base, head)
    git(repo, "switch", "-q", "main")
    check = CheckOutcome(
        name="test", command="python3 -m unittest", exit_code=1, passed=False,
        was_failing_before=False, output_tail="AssertionError: 404 != 200",
    )  # fmt: skip
    return CodeChange(
        summary="Added GET /version.",
        branch=branch,
        base_commit=base,
        head_commit=head,
        diff=diff,
        checks=[check],
        verified=False,
        revision=revision,
    )


async def test_the_reviewer_reads_the_change_and_requests_changes(
    fake_llm: FakeLLM, make_team: MakeTeam, workspaces: Path
) -> None:
    repo = workspaces / "shop"
    change = change_on_a_branch(repo, "devteam/api")
    older = change.model_copy(update={"revision": 1, "summary": "the first try"})
    latest = change.model_copy(update={"revision": 2})
    context = RecordingContext(
        {
            "api": TaskResult(output=older.model_dump(mode="json"), output_type="CodeChange"),
            "api-r2": TaskResult(output=latest.model_dump(mode="json"), output_type="CodeChange"),
        }
    )
    fake_llm.script(
        REVIEWER,
        calls(call("read_file", path="app/main.py")),
        output(verdict="request_changes", summary="The version is a literal.", findings=[FINDING]),
    )
    team = make_team(llm_url=fake_llm.base_url)
    spec = make_spec(AgentType.REVIEWER, metadata={REVIEW_ROUND_KEY: 2})

    result = await team.run(spec, context)

    review = result.output
    assert result.output_type == "Review"
    assert review["verdict"] == "request_changes"
    assert review["findings"] == [FINDING]
    assert (review["round"], review["reviewed"], review["branches"]) == (
        2,
        ["api-r2"],
        ["devteam/api"],
    )
    first, second = fake_llm.requests_for(REVIEWER)
    # Read-only tools only, on the change's head.
    assert set(first.tool_names) >= {"read_file", "tree", "git_log", "git_show"}
    assert not {"write_file", "apply_patch", "run_command"} & set(first.tool_names)
    told = first.text()
    assert "### api-r2: branch devteam/api (revision 2)" in told
    assert '+    return 200, {"version": "0.3.0"}' in told
    assert "- test `python3 -m unittest`: FAILED (exit code 1)" in told
    assert "AssertionError: 404 != 200" in told
    assert "the first try" not in told
    assert "__review_round" not in told
    assert '"version": "0.3.0"' in second.text()  # it read the file on the branch's head
    # The detached worktree is gone; the user's checkout is as it was.
    assert list((workspaces / ".worktrees").iterdir()) == []
    assert git(repo, "branch", "--show-current") == "main\n"


async def test_a_review_with_nothing_to_review_fails(
    fake_llm: FakeLLM, make_team: MakeTeam
) -> None:
    team = make_team(llm_url=fake_llm.base_url)
    with pytest.raises(AgentFailed) as failed:
        await team.run(make_spec(AgentType.REVIEWER))
    assert failed.value.error_code == "validation_error"
    assert "no code change to review" in failed.value.message
