"""Delivery: a verified, approved change is pushed over git:// and opened as a pull request.

The remote is a bare repository served by a real `git daemon`; the pull request
goes to a fake GitHub REST API on loopback that checks the token and the branch.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devteam.agents.models import CodeChange, Review
from devteam.domain.agents import AgentFailed
from devteam.domain.enums import AgentType
from devteam.domain.tasks import TaskResult
from tests import servers
from tests.fakes.git_remote import GitRemote
from tests.fakes.github import FakeGitHub
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

TOKEN = "ghp_fake_token_for_tests"
TOKEN_ENV = "DEVTEAM_TEST_GITHUB_TOKEN"
BRANCH = "devteam/1f0e7c52-delivery"


@pytest.fixture
def remote(tmp_path: Path, workspaces: Path) -> Iterator[GitRemote]:
    with GitRemote(tmp_path / "remotes", "acme/shop") as served:
        git(workspaces / "shop", "remote", "add", "origin", served.url)
        yield served


def make_change(repo: Path, *, verified: bool = True) -> CodeChange:
    """A change committed on its own branch of the project, as a coder leaves it."""
    base = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "switch", "-q", "-c", BRANCH)
    (repo / "CHANGES.md").write_text("- GET /version\n")
    git(repo, "add", "CHANGES.md")
    git(repo, "commit", "-q", "-m", "api: Add GET /version")
    head = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "switch", "-q", "main")
    return CodeChange(
        summary="Added GET /version.",
        branch=BRANCH,
        base_commit=base,
        head_commit=head,
        verified=verified,
    )


def results(change: CodeChange, verdict: str | None = "approve") -> RecordingContext:
    dependencies = {
        "api": TaskResult(output=change.model_dump(mode="json"), output_type="CodeChange")
    }
    if verdict is not None:
        review = Review(verdict=verdict, summary="Looked at it.", round=1)  # type: ignore[arg-type]
        dependencies["review"] = TaskResult(
            output=review.model_dump(mode="json"), output_type="Review"
        )
    return RecordingContext(dependencies)


def team_for(make_team: MakeTeam, github: FakeGitHub | None = None) -> Any:
    delivery: dict[str, Any] = {"token_env": TOKEN_ENV}
    if github is not None:
        delivery["github_api_url"] = github.api_url
    return make_team(verification={"delivery": delivery})


async def test_a_verified_approved_change_is_pushed_and_opened_as_a_pull_request(
    make_team: MakeTeam, workspaces: Path, remote: GitRemote, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = workspaces / "shop"
    add_checks(repo, {"test": "true"}, delivery={"push": True, "remote": "origin",
                                                 "pull_request": True})  # fmt: skip
    change = make_change(repo)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    spec = make_spec(AgentType.DELIVERY, task="Deliver the reviewed change to the shop")

    async with FakeGitHub(TOKEN, lambda b: remote.ref(b) is not None) as github:
        team = team_for(make_team, github)
        result = await team.run(spec, results(change))
        # Delivering again (a retried attempt) finds the pull request it opened.
        again = await team.run(spec, results(change))

    assert result.output_type == "Delivery"
    delivery = result.output
    assert delivery["delivered"] is True
    assert delivery["remote"] == "origin"
    assert remote.branches() == [BRANCH]
    assert remote.ref(BRANCH) == change.head_commit
    url = f"{github.api_url}/acme/shop/pull/1"
    assert delivery["branches"] == [
        {"branch": BRANCH, "commit": change.head_commit, "pull_request_url": url}
    ]
    (pull,) = github.pulls
    assert (pull["head"]["ref"], pull["base"]["ref"]) == (BRANCH, "main")
    assert pull["title"] == spec.root_task
    method, path, headers = github.requests[0]
    assert (method, path) == ("POST", "/repos/acme/shop/pulls")
    assert headers["accept"] == "application/vnd.github+json"
    assert headers["x-github-api-version"] == "2022-11-28"
    assert again.output["branches"][0]["pull_request_url"] == url


@pytest.mark.parametrize(
    ("verified", "verdict", "reason"),
    [
        (False, "approve", "not pushed: the checks of api fail"),
        (True, "request_changes", "not pushed: review round 1 requested changes"),
    ],
    ids=["red", "rejected"],
)
async def test_nothing_is_pushed_from_a_red_or_rejected_change(
    make_team: MakeTeam,
    workspaces: Path,
    remote: GitRemote,
    verified: bool,
    verdict: str,
    reason: str,
) -> None:
    repo = workspaces / "shop"
    add_checks(repo, {"test": "true"}, delivery={"push": True})
    change = make_change(repo, verified=verified)

    result = await team_for(make_team).run(make_spec(AgentType.DELIVERY), results(change, verdict))

    assert result.output["delivered"] is False
    assert result.output["reason"] == reason
    assert remote.branches() == []


async def test_a_project_without_delivery_is_not_pushed(
    make_team: MakeTeam, workspaces: Path, remote: GitRemote
) -> None:
    repo = workspaces / "shop"
    add_checks(repo, {"test": "true"})
    change = make_change(repo)

    result = await team_for(make_team).run(make_spec(AgentType.DELIVERY), results(change))

    assert result.output["delivered"] is False
    assert "delivery is not configured" in result.output["reason"]
    assert remote.branches() == []


async def test_a_refused_pull_request_fails_the_delivery_visibly(
    make_team: MakeTeam, workspaces: Path, remote: GitRemote, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = workspaces / "shop"
    add_checks(repo, {"test": "true"}, delivery={"push": True, "pull_request": True})
    change = make_change(repo)
    monkeypatch.setenv(TOKEN_ENV, "ghp_someone_elses")

    async with FakeGitHub(TOKEN, lambda b: remote.ref(b) is not None) as github:
        with pytest.raises(AgentFailed) as failed:
            await team_for(make_team, github).run(make_spec(AgentType.DELIVERY), results(change))

    assert failed.value.error_code == "delivery_failed"
    assert "GitHub refused the pull request (401): Bad credentials" in failed.value.message
    assert github.pulls == []


async def test_a_push_the_remote_refuses_fails_the_delivery(
    make_team: MakeTeam, workspaces: Path, remote: GitRemote
) -> None:
    repo = workspaces / "shop"
    add_checks(repo, {"test": "true"}, delivery={"push": True, "remote": "upstream"})
    change = make_change(repo)

    with pytest.raises(AgentFailed) as failed:
        await team_for(make_team).run(make_spec(AgentType.DELIVERY), results(change))

    assert failed.value.error_code == "delivery_failed"
    assert "pushing devteam/1f0e7c52-delivery to upstream failed" in failed.value.message


async def test_a_coder_given_the_whole_task_delivers_its_verified_change(
    fake_llm: FakeLLM, make_team: MakeTeam, workspaces: Path, remote: GitRemote
) -> None:
    if shutil.which("bwrap") is None:
        servers.unavailable("bubblewrap (bwrap) is not installed")
    repo = workspaces / "shop"
    add_checks(repo, {"test": UNITTEST_CHECK}, delivery={"push": True})
    fake_llm.script(
        "Backend coder",
        calls(
            call("write_file", path="app/main.py", content=main_with_version("0.3.0")),
            call("write_file", path="tests/test_version.py", content=VERSION_UNITTEST),
        ),
        output(summary="Added GET /version with a test."),
    )
    team = make_team(llm_url=fake_llm.base_url)
    context = RecordingContext()

    result = await team.run(make_spec(AgentType.BACKEND), context)  # a root task: no parent

    change = result.output
    assert change["verified"] is True
    assert change["delivery"]["delivered"] is True
    assert remote.ref(change["branch"]) == change["head_commit"]
    assert ("branch pushed", {"branch": change["branch"], "remote": "origin"}) in (
        context.progress_events
    )
