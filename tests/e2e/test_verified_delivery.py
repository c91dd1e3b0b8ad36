"""A feature, end to end: planned, coded until its checks pass, reviewed, pushed.

The whole service as `devteam serve` opens it, on SQLite with the in-process
broker and on Postgres with Redis. The LLM is the fake OpenAI-compatible server:
the planner splits the task; the backend coder's first change fails the
project's test (run by DevTeam in the sandbox), the failure goes back to it and
its second round fixes it; the reviewer requests changes once, the coder's
revision continues the branch, the second review approves; the delivery step
pushes the branch over git:// to a bare repository served by `git daemon`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from devteam.domain.enums import Role, TaskStatus
from devteam.domain.events import EventType
from devteam.domain.tasks import TaskRequest
from devteam.services import open_services
from devteam.settings import Settings
from tests import servers
from tests.e2e.test_agents_end_to_end import (
    NARRATIVE,
    BackendSettings,
    backend_settings,
    wait_until_done,
)
from tests.factories import create_user
from tests.fakes.git_remote import GitRemote
from tests.fakes.llm import FakeLLM, call, calls, output
from tests.integration.agents.conftest import FAKE_MODEL, FAST_AGENTS, app_config
from tests.sample_project import (
    UNITTEST_CHECK,
    VERSION_UNITTEST,
    add_checks,
    git,
    main_with_version,
    make_project,
)

__all__ = ["backend_settings"]  # the fixture, on both backend pairs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

TASK = "Add a /version endpoint to the shop that answers the app version as JSON"
PLAN = {
    "subtasks": [
        {
            "key": "analysis",
            "agent_type": "codebase_analyzer",
            "task": "Find where the shop's routes and tests live",
            "complexity": 1,
        },
        {
            "key": "api",
            "agent_type": "backend",
            "task": "Add GET /version answering the version, with a test",
            "complexity": 4,
            "depends_on": ["analysis"],
        },
    ],
    "rationale": "look, then build",
}


FINDING = {"file": "CHANGES.md", "severity": "major", "message": "Add the new route."}


def script(llm: FakeLLM) -> None:
    llm.script("TeamLeader: planning", output(**PLAN))
    llm.script("Codebase analyzer", output(**NARRATIVE))
    llm.script(
        "Backend coder",
        calls(
            call("write_file", path="app/main.py", content=main_with_version("0.2.0")),
            call("write_file", path="tests/test_version.py", content=VERSION_UNITTEST),
        ),
        output(summary="Added GET /version with a test."),
        calls(call("write_file", path="app/main.py", content=main_with_version("0.3.0"))),
        output(summary="Added GET /version (0.3.0, as in pyproject.toml) with a test."),
        # The revision after the review.
        calls(call("write_file", path="CHANGES.md", content="- GET /version\n")),
        output(summary="Added GET /version with a test, and a CHANGES.md entry."),
    )
    llm.script(
        "Code reviewer",
        output(verdict="request_changes", summary="Note it in CHANGES.md.", findings=[FINDING]),
        output(verdict="approve", summary="Small, tested, checks green.", findings=[]),
    )


async def test_a_feature_is_fixed_until_green_reviewed_twice_and_pushed(
    fake_llm: FakeLLM,
    make_settings: Callable[..., Settings],
    backend_settings: BackendSettings,
    tmp_path: Path,
) -> None:
    if shutil.which("bwrap") is None:
        servers.unavailable("bubblewrap (bwrap) is not installed")
    workspaces = tmp_path / "workspaces"
    repo = make_project(workspaces / "shop")
    add_checks(repo, {"test": UNITTEST_CHECK}, delivery={"push": True, "remote": "origin"})
    settings = make_settings(
        **backend_settings,
        llm_model=FAKE_MODEL,
        llm_base_url=fake_llm.base_url,
        workspaces_root=workspaces,
        migrate_on_start=False,
    )
    config = app_config(
        agents=FAST_AGENTS, team_leader={"leases": {"duration_s": 30.0, "heartbeat_s": 2.0}}
    )
    script(fake_llm)

    with GitRemote(tmp_path / "remotes", "acme/shop") as remote:
        git(repo, "remote", "add", "origin", remote.url)
        async with open_services(settings, config, executors=True) as services:
            user = await create_user(services.store, role=Role.DEVELOPER)
            submission = await services.team_leader.submit(
                TaskRequest(task=TASK, complexity=7, task_type="feature", project_id="shop"),
                user,
            )
            root = await wait_until_done(services, submission.task.id, timeout=150)
            async with services.store.read() as tx:
                children = {c.key: c for c in await tx.tasks.children(root.id)}
                events = await tx.events.list_after(root.id, 0, limit=10_000)
        pushed = remote.branches()

    assert root.status == TaskStatus.COMPLETED, root.error
    assert list(children) == ["analysis", "api", "review", "delivery", "api-r2", "review-r2"]
    api = (children["api"].result or {})["output"]
    assert api["verified"] is True
    assert api["fix_rounds"] == 1
    assert [(c["name"], c["passed"]) for c in api["checks"]] == [("test", True)]

    # Both check rounds after the change (and the base commit's) are events of the subtask.
    checks = [
        (e.data["round"], e.data["passed"])
        for e in events
        if e.type == EventType.CHECK_COMPLETED and e.subtask_id == children["api"].id
    ]
    assert checks == [(0, True), (1, False), (2, True)]

    # The first review sent the work back; the revision continued the branch; the second
    # review approved. Each review is an event.
    assert [
        (e.data["verdict"], e.data["round"]) for e in events if e.type == EventType.REVIEW_COMPLETED
    ] == [("request_changes", 1), ("approve", 2)]
    revised = (children["api-r2"].result or {})["output"]
    assert (revised["branch"], revised["revision"], revised["verified"]) == (
        api["branch"],
        2,
        True,
    )
    assert git(repo, "rev-parse", f"{revised['head_commit']}^").strip() == api["head_commit"]
    assert (
        "- [major] CHANGES.md: Add the new route."
        in fake_llm.requests_for("Backend coder")[4].text()
    )

    # The branch is on the remote, at the revision's commit; the root's result says so.
    assert pushed == [api["branch"]]
    assert remote.ref(api["branch"]) == revised["head_commit"]
    assert root.result is not None
    assert root.result["verified"] is True
    assert root.result["review"] == {"verdict": "approve", "round": 2}
    delivery = root.result["delivery"]
    assert delivery["delivered"] is True
    assert delivery["branches"] == [
        {"branch": api["branch"], "commit": revised["head_commit"], "pull_request_url": None}
    ]
    assert fake_llm.remaining("Backend coder") == 0
    assert fake_llm.remaining("Code reviewer") == 0
