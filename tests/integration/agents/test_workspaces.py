"""Coders' git worktrees: their own branch, a diff from the base, the user's checkout untouched."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from devteam.agents.workspaces import Workspaces
from devteam.domain.agents import AgentFailed
from devteam.settings.agents import GitConfig
from tests.sample_project import VERSION_ROUTE_PATCH, git, make_project


@pytest.fixture
def repo(workspaces: Path) -> Path:
    return workspaces / "shop"


@pytest.fixture
def spaces(workspaces: Path) -> Workspaces:
    return Workspaces(workspaces, GitConfig())


def checkout_state(repo: Path) -> tuple[str, str, str]:
    """The user's branch, commit and status."""
    return (
        git(repo, "branch", "--show-current"),
        git(repo, "rev-parse", "HEAD"),
        git(repo, "status", "--porcelain"),
    )


async def test_a_change_is_committed_on_its_branch_and_diffs_from_the_base(
    spaces: Workspaces, repo: Path, tmp_path: Path
) -> None:
    (repo / "notes.txt").write_text("the user's uncommitted work\n")
    before = checkout_state(repo)
    task_id = uuid.uuid4()

    async with spaces.worktree(repo, task_id) as tree:
        assert tree.path == (spaces.root / ".worktrees" / str(task_id)).resolve()
        assert tree.branch == f"devteam/{task_id}"
        assert tree.base_commit == before[1].strip()
        assert not (tree.path / "notes.txt").exists()  # it starts from the last commit
        patch = tmp_path / "version.patch"
        patch.write_text(VERSION_ROUTE_PATCH)
        git(tree.path, "apply", str(patch))
        (tree.path / "tests" / "test_version.py").write_text("def test_version(): ...\n")
        (tree.path / "static" / "app.js").unlink()
        git(tree.path, "mv", "static/index.html", "static/home.html")
        change = await tree.finish("api: add /version", "Adds the route and its test.")

    assert change.head_commit is not None
    assert {(f.path, f.status, f.old_path) for f in change.files} == {
        ("app/main.py", "modified", None),
        ("tests/test_version.py", "added", None),
        ("static/app.js", "deleted", None),
        ("static/home.html", "renamed", "static/index.html"),
    }
    main = next(f for f in change.files if f.path == "app/main.py")
    assert (main.additions, main.deletions) == (5, 0)

    # The branch holds the commit; the diff applies to the base; the checkout is untouched.
    assert git(repo, "log", "-1", "--format=%s%n%b", f"devteam/{task_id}").startswith(
        "api: add /version\nAdds the route"
    )
    assert git(repo, "rev-parse", f"devteam/{task_id}").strip() == change.head_commit
    (tmp_path / "change.diff").write_text(change.diff)
    git(repo, "apply", "--check", str(tmp_path / "change.diff"))
    assert checkout_state(repo) == before
    assert not tree.path.exists()
    assert git(repo, "worktree", "list").count("\n") == 1


async def test_a_retried_attempt_starts_from_a_clean_branch(spaces: Workspaces, repo: Path) -> None:
    task_id = uuid.uuid4()
    async with spaces.worktree(repo, task_id) as tree:
        (tree.path / "half-done.py").write_text("x = 1\n")
        await tree.finish("first attempt")
    with pytest.raises(RuntimeError, match="crashed"):
        async with spaces.worktree(repo, task_id) as tree:
            (tree.path / "scratch.py").write_text("y = 2\n")
            raise RuntimeError("crashed")
    assert not tree.path.exists()

    async with spaces.worktree(repo, task_id) as tree:
        assert not (tree.path / "half-done.py").exists()
        assert not (tree.path / "scratch.py").exists()
        change = await tree.finish("third attempt")
    assert change.head_commit is None and change.diff == "" and change.files == []
    assert git(repo, "rev-parse", f"devteam/{task_id}") == git(repo, "rev-parse", "main")


async def test_a_cancelled_attempt_removes_its_worktree(spaces: Workspaces, repo: Path) -> None:
    entered = asyncio.Event()
    paths: list[Path] = []

    async def attempt() -> None:
        async with spaces.worktree(repo, uuid.uuid4()) as tree:
            paths.append(tree.path)
            entered.set()
            await asyncio.Event().wait()

    running = asyncio.create_task(attempt())
    await entered.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert not paths[0].exists()
    assert git(repo, "worktree", "list").count("\n") == 1


async def test_a_worktree_left_by_a_crashed_process_is_replaced(
    spaces: Workspaces, repo: Path
) -> None:
    task_id = uuid.uuid4()
    stale = spaces.worktrees / str(task_id)
    git(repo, "worktree", "add", "-q", "-b", f"devteam/{task_id}", str(stale))
    (stale / "leftover.py").write_text("z = 3\n")
    async with spaces.worktree(repo, task_id) as tree:
        assert not (tree.path / "leftover.py").exists()


@pytest.mark.parametrize(
    ("project_id", "message"),
    [
        (None, "works on a project: submit the task with a project_id"),
        ("missing", "project 'missing' does not exist: no git repository at"),
    ],
)
def test_a_task_needs_an_existing_project(
    spaces: Workspaces, project_id: str | None, message: str
) -> None:
    with pytest.raises(AgentFailed, match=message) as failed:
        spaces.require(project_id, "backend coder")
    assert failed.value.error_code == "validation_error"


async def test_a_project_without_a_commit_has_no_base(spaces: Workspaces, workspaces: Path) -> None:
    empty = workspaces / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    with pytest.raises(AgentFailed, match="has no commit to start from"):
        async with spaces.worktree(spaces.require("empty", "backend coder"), uuid.uuid4()):
            pass


async def test_worktrees_can_live_elsewhere(workspaces: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "trees"
    spaces = Workspaces(workspaces, GitConfig(worktrees_dir=str(elsewhere), branch_prefix="ai/"))
    other = make_project(workspaces / "other")
    task_id = uuid.uuid4()
    async with spaces.worktree(other, task_id) as tree:
        assert tree.path.parent == elsewhere.resolve()
        assert tree.branch == f"ai/{task_id}"
