"""The coders' fix loop: DevTeam runs the project's checks in the sandbox, not the model.

A backend coder scripted by the fake LLM works on the sample project, whose
`.devteam.yaml` names real checks; they run under bubblewrap in the worktree.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from devteam.agents.models import Review, ReviewFinding
from devteam.domain.agents import AgentFailed
from devteam.domain.enums import AgentType
from devteam.domain.events import EventType
from devteam.domain.tasks import REVISION_KEY, TaskResult
from tests import servers
from tests.fakes.llm import FakeLLM, call, calls, output
from tests.integration.agents.conftest import MakeTeam, RecordingContext, make_spec
from tests.sample_project import (
    UNITTEST_CHECK,
    VERSION_UNITTEST,
    add_checks,
    git,
    main_with_version,
)

pytestmark = pytest.mark.slow

BACKEND = "Backend coder"


@pytest.fixture(autouse=True)
def _bubblewrap() -> None:
    if shutil.which("bwrap") is None:
        servers.unavailable("bubblewrap (bwrap) is not installed")


def write_version(version: str, *, with_test: bool = True) -> object:
    writes = [call("write_file", path="app/main.py", content=main_with_version(version))]
    if with_test:
        writes.append(call("write_file", path="tests/test_version.py", content=VERSION_UNITTEST))
    return calls(*writes)


def check_events(context: RecordingContext) -> list[tuple[str, int, bool]]:
    return [
        (data["name"], data["round"], data["passed"])
        for kind, data in context.events
        if kind == EventType.CHECK_COMPLETED
    ]


async def test_a_failing_check_goes_back_to_the_model_until_it_passes(
    fake_llm: FakeLLM, make_team: MakeTeam, workspaces: Path
) -> None:
    add_checks(workspaces / "shop", {"test": UNITTEST_CHECK})
    team = make_team(llm_url=fake_llm.base_url)
    fake_llm.script(
        BACKEND,
        write_version("0.2.0"),
        output(summary="Added GET /version with a test."),
        # The checks fail: the model is told, and fixes the route.
        write_version("0.3.0", with_test=False),
        output(summary="Added GET /version (0.3.0) with a test."),
    )
    context = RecordingContext()

    result = await team.run(make_spec(AgentType.BACKEND), context)

    change = result.output
    assert change["verified"] is True
    assert change["fix_rounds"] == 1
    assert [(c["name"], c["passed"], c["exit_code"]) for c in change["checks"]] == [
        ("test", True, 0)
    ]
    assert change["checks"][0]["command"] == UNITTEST_CHECK
    assert '"version": "0.3.0"' in change["diff"]
    # Round 0 on the base commit, round 1 red, round 2 green: each an event.
    assert check_events(context) == [("test", 0, True), ("test", 1, False), ("test", 2, True)]
    # What went back to the model: the command, the exit code and the end of the output.
    told = fake_llm.requests_for(BACKEND)[2].text()
    assert f"### test: `{UNITTEST_CHECK}` (exit code 1)" in told
    assert "AssertionError" in told and "0.2.0" in told
    assert fake_llm.remaining(BACKEND) == 0
    # The coder was told the checks up front, and may run commands itself.
    first = fake_llm.requests_for(BACKEND)[0]
    assert f"- test: `{UNITTEST_CHECK}`" in first.text()
    assert "run_command" in first.tool_names


async def test_a_check_that_failed_on_the_base_commit_is_not_blamed(
    fake_llm: FakeLLM, make_team: MakeTeam, workspaces: Path
) -> None:
    add_checks(workspaces / "shop", {"test": UNITTEST_CHECK, "changelog": "test -f CHANGES.md"})
    team = make_team(llm_url=fake_llm.base_url)
    fake_llm.script(BACKEND, write_version("0.3.0"), output(summary="Added GET /version."))
    context = RecordingContext()

    result = await team.run(make_spec(AgentType.BACKEND), context)

    change = result.output
    assert change["verified"] is True
    assert change["fix_rounds"] == 0
    checks = {c["name"]: c for c in change["checks"]}
    assert checks["test"]["passed"] is True
    assert checks["changelog"]["passed"] is False
    assert checks["changelog"]["was_failing_before"] is True
    assert "the others failed on the base commit too" in change["verification"]
    assert check_events(context) == [
        ("test", 0, True),
        ("changelog", 0, False),
        ("test", 1, True),
        ("changelog", 1, False),
    ]
    assert "(fails already on the base commit)" in fake_llm.requests_for(BACKEND)[0].text()


async def test_a_change_that_stays_red_is_not_verified_or_fails_when_green_is_required(
    fake_llm: FakeLLM, make_team: MakeTeam, workspaces: Path
) -> None:
    repo = workspaces / "shop"
    add_checks(repo, {"test": UNITTEST_CHECK})
    replies = [write_version("0.2.0"), output(summary="Added it."),
               write_version("0.1.0", with_test=False), output(summary="Fixed it.")]  # fmt: skip
    fake_llm.script(BACKEND, *replies)
    team = make_team(llm_url=fake_llm.base_url, verification={"verify": {"max_fix_rounds": 1}})

    result = await team.run(make_spec(AgentType.BACKEND))

    change = result.output
    assert change["verified"] is False
    assert change["fix_rounds"] == 1
    assert change["checks"][0]["passed"] is False
    assert change["checks"][0]["was_failing_before"] is False
    assert "checks fail that passed on the base commit" in change["verification"]
    # The red change is still on its branch, for a person to look at.
    assert git(repo, "rev-parse", change["branch"]).strip() == change["head_commit"]

    fake_llm.script(BACKEND, *replies)
    strict = make_team(
        llm_url=fake_llm.base_url,
        verification={"verify": {"max_fix_rounds": 1, "require_green": True}},
    )
    with pytest.raises(AgentFailed) as failed:
        await strict.run(make_spec(AgentType.BACKEND))
    assert failed.value.error_code == "checks_failed"
    assert "is not verified" in failed.value.message


async def test_a_revision_after_review_continues_the_branch_with_the_findings(
    fake_llm: FakeLLM, make_team: MakeTeam, workspaces: Path
) -> None:
    repo = workspaces / "shop"
    base = add_checks(repo, {"test": UNITTEST_CHECK, "changelog": "test -f CHANGES.md"})
    team = make_team(llm_url=fake_llm.base_url)
    fake_llm.script(BACKEND, write_version("0.3.0"), output(summary="Added GET /version."))
    first = await team.run(make_spec(AgentType.BACKEND))
    change = first.output
    review = Review(
        verdict="request_changes",
        summary="Works; the route needs a docstring.",
        findings=[ReviewFinding(file="app/main.py", line=22, severity="major",
                                message="Say what the route answers in a docstring.")],
    )  # fmt: skip
    fake_llm.script(
        BACKEND,
        calls(call("write_file", path="NOTES.md", content="GET /version: the app version\n")),
        output(summary="Added GET /version, documented."),
    )
    revision = {"of": "api", "revision": 2, "branch": change["branch"],
                "base_commit": change["base_commit"], "review": "review"}  # fmt: skip
    context = RecordingContext(
        {
            "api": TaskResult(output=change, output_type="CodeChange"),
            "review": TaskResult(output=review.model_dump(mode="json"), output_type="Review"),
        }
    )

    second = await team.run(
        make_spec(AgentType.BACKEND, key="api-r2", metadata={REVISION_KEY: revision}), context
    )

    revised = second.output
    assert revised["branch"] == change["branch"]
    assert revised["base_commit"] == base
    assert revised["revision"] == 2
    # The branch grew by one commit; the diff counts from the base: both changes are in it.
    assert git(repo, "rev-parse", f"{revised['head_commit']}^").strip() == change["head_commit"]
    assert git(repo, "rev-parse", change["branch"]).strip() == revised["head_commit"]
    assert {f["path"] for f in revised["files_changed"]} == {
        "app/main.py",
        "tests/test_version.py",
        "NOTES.md",
    }
    # What failed on the base commit stays known without running there again.
    assert [(n, r) for n, r, _ in check_events(context)] == [("test", 1), ("changelog", 1)]
    assert revised["verified"] is True
    assert {c["name"]: c["was_failing_before"] for c in revised["checks"]} == {
        "test": False,
        "changelog": True,
    }
    told = fake_llm.requests_for(BACKEND)[2].text()
    assert "## Revision after review" in told
    assert "- [major] app/main.py:22: Say what the route answers in a docstring." in told
    assert "__revision" not in told


async def test_a_project_without_checks_verifies_nothing(
    fake_llm: FakeLLM, make_team: MakeTeam, workspaces: Path
) -> None:
    add_checks(workspaces / "shop", {})
    team = make_team(llm_url=fake_llm.base_url)
    fake_llm.script(BACKEND, write_version("0.3.0"), output(summary="Added GET /version."))
    context = RecordingContext()

    result = await team.run(make_spec(AgentType.BACKEND), context)

    assert result.output["checks"] == []
    assert result.output["verified"] is False
    assert result.output["verification"].startswith("nothing was verified")
    assert check_events(context) == []


async def test_the_fix_rounds_share_the_attempts_limits(
    fake_llm: FakeLLM, make_team: MakeTeam, workspaces: Path
) -> None:
    add_checks(workspaces / "shop", {"test": UNITTEST_CHECK})
    fake_llm.script(
        BACKEND,
        write_version("0.2.0"),
        output(summary="Added it."),
        write_version("0.3.0", with_test=False),
        output(summary="Fixed it."),
    )
    team = make_team(llm_url=fake_llm.base_url, agents={"limits": {"backend": {"max_requests": 3}}})

    with pytest.raises(AgentFailed) as failed:
        await team.run(make_spec(AgentType.BACKEND))

    # Two requests in the first round; the fix round may make one more, not two.
    assert failed.value.error_code == "agent_stuck"
    assert "no answer after 3 model requests" in failed.value.message
    assert len(fake_llm.requests_for(BACKEND)) == 3


async def test_set_up_runs_before_the_checks_and_what_it_leaves_is_not_committed(
    fake_llm: FakeLLM, make_team: MakeTeam, workspaces: Path
) -> None:
    setup = ["mkdir -p build/lib", "touch build/lib/shop.whl setup.log"]
    add_checks(workspaces / "shop", {"built": "test -f build/lib/shop.whl"}, setup=setup)
    team = make_team(llm_url=fake_llm.base_url)
    fake_llm.script(BACKEND, write_version("0.3.0"), output(summary="Added GET /version."))
    context = RecordingContext()

    result = await team.run(make_spec(AgentType.BACKEND), context)

    change = result.output
    assert change["verified"] is True
    assert check_events(context) == [("built", 0, True), ("built", 1, True)]
    ran = [
        (data["command"], data["exit_code"])
        for message, data in context.progress_events
        if message == "setup command ran"
    ]
    assert ran == [(command, 0) for command in setup]
    assert {f["path"] for f in change["files_changed"]} == {"app/main.py", "tests/test_version.py"}
