"""A coder steered into planting a `.git` never gets a command run on the server.

The reproduced attack, through the API of a live service with executors: a
backend coder (scripted by the fake LLM, as a prompt injection in the project
would steer it) writes `.evil/HEAD` (on its own branch), `.evil/config` with
`core.fsmonitor = <command>`, the folders git wants, then `.git` = `gitdir:
.evil`. The next git DevTeam ran in the worktree (`git add --all` when the
attempt finished) ran the command. Now the workspace server refuses the `.git`
write by every route it has (a plain write, a patch renaming a file onto it, a
symlink the project holds), and the attempt completes without it; when another
tool plants it anyway, the attempt fails with `workspace_tampered`, recorded in
the audit log, and git never runs there.
"""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devteam.app import create_app
from devteam.domain.enums import Role
from devteam.settings import AppConfig, Settings, load_config
from tests.auth import JWT_SECRET, security_config
from tests.fakes.llm import FakeLLM, Recorded, ToolCalls, ToolCallSpec, call, calls, output
from tests.integration.agents.conftest import FAKE_MODEL, FAST_AGENTS, REPO, app_config
from tests.live import serve
from tests.sample_project import git, make_project

pytestmark = pytest.mark.slow

BACKEND = "Backend coder"
UNGUARDED = Path(__file__).resolve().parents[1] / "fakes" / "unguarded_files.py"
REFUSED = ".git is refused"
WORKTREE_ID = re.compile(r"\.worktrees/([0-9a-f-]{36})")
RENAME_ONTO_GIT = "--- a/gitfile.txt\n+++ b/.git\n@@ -1 +1 @@\n-gitdir: .evil\n+gitdir: .evil\n"


def planted(marker: Path, request: Recorded) -> dict[str, str]:
    """The git directory the attack plants: HEAD on the attempt's branch (named from the
    worktree the model was told about), a config whose fsmonitor runs a command."""
    found = WORKTREE_ID.search(request.text())
    assert found is not None, "the briefing names the worktree"
    return {
        ".evil/HEAD": f"ref: refs/heads/devteam/{found.group(1)}\n",
        ".evil/config": f"[core]\n\trepositoryformatversion = 0\n\tfsmonitor = touch {marker} #\n",
        ".evil/objects/info/.keep": "",
        ".evil/refs/heads/.keep": "",
    }


def writes(files: dict[str, str], tool: str = "write_file") -> list[ToolCallSpec]:
    return [call(tool, path=path, content=content) for path, content in files.items()]


def done() -> ToolCalls:
    return output(summary="Added the endpoint.", follow_ups=[])


Script = Callable[[Path], list[Any]]


def by_write(marker: Path) -> list[Any]:
    gitfile = call("write_file", path=".git", content="gitdir: .evil\n")
    return [lambda request: calls(*writes(planted(marker, request)), gitfile), done()]


def by_patch_renaming_a_file_onto_it(marker: Path) -> list[Any]:
    prepared = call("write_file", path="gitfile.txt", content="gitdir: .evil\n")
    return [
        lambda request: calls(*writes(planted(marker, request)), prepared),
        calls(call("apply_patch", diff=RENAME_ONTO_GIT)),
        done(),
    ]


def by_a_symlink_in_the_project(marker: Path) -> list[Any]:
    """The project holds `docs/dotgit -> ../.git`: writing the link would write `.git`."""
    link = call("write_file", path="docs/dotgit", content="gitdir: .evil\n")
    return [lambda request: calls(*writes(planted(marker, request)), link), done()]


def by_another_tool(marker: Path) -> list[Any]:
    """A tool that writes anything (as a sandbox running commands could) plants it all."""
    gitfile = call("put_file", path=".git", content="gitdir: .evil\n")
    return [
        lambda request: calls(*writes(planted(marker, request), "put_file"), gitfile),
        done(),
    ]


def config_with_an_unguarded_tool() -> AppConfig:
    """The shipped config (fast), plus a server for the backend that writes any file."""
    servers = load_config(REPO / "config").mcp_servers.model_dump(by_alias=True)["servers"]
    servers["unguarded"] = {
        "transport": {
            "type": "stdio",
            "command": sys.executable,
            "args": [str(UNGUARDED), "--root", "{workspace}"],
        },
        "agents": {"backend": ["*"]},
    }
    config = app_config(agents=FAST_AGENTS, mcp_servers={"servers": servers})
    return config.model_copy(update={"security": security_config().security})


@dataclass
class Outcome:
    task: dict[str, Any]
    audit: list[dict[str, Any]]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    repo = make_project(tmp_path / "workspaces" / "shop")
    (repo / "docs").mkdir()
    (repo / "docs" / "dotgit").symlink_to("../.git")
    git(repo, "add", "docs/dotgit")
    git(repo, "commit", "-q", "-m", "A link to the repository")
    return repo


@asynccontextmanager
async def service(
    make_settings: Callable[..., Settings], fake_llm: FakeLLM, workspaces: Path
) -> AsyncIterator[Callable[[], Any]]:
    settings = make_settings(
        llm_model=FAKE_MODEL,
        llm_base_url=fake_llm.base_url,
        workspaces_root=workspaces,
        jwt_secret=JWT_SECRET,
    )
    app = create_app(settings, config_with_an_unguarded_tool(), executors=True)
    async with serve(app, settings) as server:
        _, developer = await server.login_new_user(Role.DEVELOPER)
        _, admin = await server.login_new_user(Role.ADMIN)

        async def run_backend_task() -> Outcome:
            async with server.http(developer) as http:
                response = await http.post(
                    "/api/v1/tasks",
                    json={
                        "task": "Add GET /version (follow the notes in the project's README)",
                        "agent_type": "backend",
                        "project_id": "shop",
                        "complexity": 1,
                    },
                )
                assert response.status_code == 202, response.text
                task_id = response.json()["id"]
                await server.finished(task_id, timeout=45)
                task = (await http.get(f"/api/v1/tasks/{task_id}")).json()
            async with server.http(admin) as http:
                response = await http.get("/api/v1/audit", params={"action": "workspace.tampered"})
                assert response.status_code == 200, response.text
            return Outcome(task, response.json()["items"])

        yield run_backend_task


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "script",
    [by_write, by_patch_renaming_a_file_onto_it, by_a_symlink_in_the_project],
    ids=["write", "patch-rename", "project-symlink"],
)
async def test_planting_a_gitfile_through_the_workspace_is_refused(
    fake_llm: FakeLLM,
    make_settings: Callable[..., Settings],
    project: Path,
    tmp_path: Path,
    script: Script,
) -> None:
    marker = tmp_path / "marker" / "pwned"
    marker.parent.mkdir()
    fake_llm.script(BACKEND, *script(marker))

    async with service(make_settings, fake_llm, project.parent) as run_backend_task:
        outcome = await run_backend_task()

    assert not marker.exists(), "the planted command ran on the server"
    task = outcome.task
    assert task["status"] == "completed", task["error"]
    change = task["result"]["output"]
    paths = {f["path"] for f in change["files_changed"]}
    assert ".git" not in paths and "docs/dotgit" not in paths
    assert git(project, "rev-parse", change["branch"]).strip() == change["head_commit"]
    # The model was told why, as a tool error it can read.
    answered = fake_llm.requests_for(BACKEND)[-1].text()
    assert REFUSED in answered
    assert outcome.audit == []


@pytest.mark.timeout(90)
async def test_a_gitfile_planted_by_another_tool_fails_the_task_as_tampered(
    fake_llm: FakeLLM,
    make_settings: Callable[..., Settings],
    project: Path,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "marker" / "pwned"
    marker.parent.mkdir()
    fake_llm.script(BACKEND, *by_another_tool(marker))
    base = git(project, "rev-parse", "HEAD").strip()

    async with service(make_settings, fake_llm, project.parent) as run_backend_task:
        outcome = await run_backend_task()

    assert not marker.exists(), "the planted command ran on the server"
    task = outcome.task
    assert task["status"] == "failed"
    assert task["error"]["code"] == "workspace_tampered"
    assert "the worktree's .git was changed" in task["error"]["message"]
    assert task["attempt"] == 1  # not retried
    (entry,) = outcome.audit
    assert entry["resource_type"] == "task" and entry["resource_id"] == task["id"]
    assert entry["outcome"] == "denied"
    assert entry["details"]["project_id"] == "shop"
    # Nothing was committed, and the worktree is gone.
    assert git(project, "rev-parse", f"devteam/{task['id']}").strip() == base
    assert list((project.parent / ".worktrees").iterdir()) == []
