"""mcp-server-git over stdio, started per task on a temporary repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from devteam.mcp.errors import ToolCallFailed, ToolUnavailable
from devteam.settings import load_config
from tests.integration.mcp.conftest import MakeManager

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    )
    return done.stdout


def make_repo(path: Path) -> Path:
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "dev@example.com")
    git(path, "config", "user.name", "Dev")
    (path / "app.py").write_text("print('hello')\n")
    git(path, "add", "app.py")
    git(path, "commit", "-q", "-m", "First commit")
    return path


@pytest.fixture
def shipped_git() -> dict[str, object]:
    return load_config(REPO / "config").mcp_servers.servers["git"].model_dump()


async def test_git_tools_on_a_task_repository(
    make_manager: MakeManager, tmp_path: Path, shipped_git: dict[str, object]
) -> None:
    repo = make_repo(tmp_path / "repo")
    manager = make_manager({"git": shipped_git})
    async with manager.task_scope(repo) as scope:
        status = await scope.call("git", "git_status", {"repo_path": str(repo)})
        assert not status.is_error
        assert "On branch main" in status.text

        (repo / "app.py").write_text("print('hello, world')\n")
        diff = await scope.call("git", "git_diff_unstaged", {"repo_path": str(repo)})
        assert "+print('hello, world')" in diff.text

        log = await scope.call("git", "git_log", {"repo_path": str(repo)})
        assert "First commit" in log.text
        assert (await scope.call("git", "git_log", {"repo_path": str(repo)})).cached

        await scope.call("git", "git_add", {"repo_path": str(repo), "files": ["app.py"]})
        await scope.call("git", "git_commit", {"repo_path": str(repo), "message": "Greet"})
        log = await scope.call("git", "git_log", {"repo_path": str(repo)})
        assert not log.cached  # the commit retired the task's cache
        assert "Greet" in log.text
        assert git(repo, "log", "--format=%s") == "Greet\nFirst commit\n"

        outside = await scope.call("git", "git_status", {"repo_path": str(tmp_path)})
        assert outside.is_error

        connection = scope.connection("git")
        assert connection is not None and connection.connected
    assert not connection.connected  # closed with its task


async def test_an_unknown_tool_is_refused_and_not_retried(
    make_manager: MakeManager, tmp_path: Path, shipped_git: dict[str, object]
) -> None:
    repo = make_repo(tmp_path / "repo")
    manager = make_manager({"git": shipped_git})
    labels = {"server": "git", "tool": "git_push", "outcome": "protocol_error"}
    refused = REGISTRY.get_sample_value("devteam_mcp_calls_total", labels) or 0.0
    retries = REGISTRY.get_sample_value("devteam_mcp_retries_total", {"server": "git"}) or 0.0
    async with manager.task_scope(repo) as scope:
        with pytest.raises(ToolCallFailed, match="Unknown tool: git_push") as caught:
            await scope.call("git", "git_push", {"repo_path": str(repo)})
    assert caught.value.code == "tool_error"
    assert REGISTRY.get_sample_value("devteam_mcp_calls_total", labels) == refused + 1
    assert (
        REGISTRY.get_sample_value("devteam_mcp_retries_total", {"server": "git"}) or 0
    ) == retries
    assert manager.breaker("git").snapshot().failed == 0


async def test_each_task_gets_its_own_server_and_shares_the_breaker(
    make_manager: MakeManager, tmp_path: Path, shipped_git: dict[str, object]
) -> None:
    one, two = make_repo(tmp_path / "one"), make_repo(tmp_path / "two")
    (two / "extra.txt").write_text("untracked\n")
    manager = make_manager({"git": shipped_git})
    async with manager.task_scope(one) as first, manager.task_scope(two) as second:
        assert (
            "extra.txt" not in (await first.call("git", "git_status", {"repo_path": str(one)})).text
        )
        assert "extra.txt" in (await second.call("git", "git_status", {"repo_path": str(two)})).text
        # Each server is confined to its own task's repository.
        assert (await first.call("git", "git_status", {"repo_path": str(two)})).is_error
        first_connection, second_connection = first.connection("git"), second.connection("git")
        assert first_connection is not None and second_connection is not None
        assert first_connection.instance.key != second_connection.instance.key
    assert manager.breaker("git").snapshot().calls == 3
    (status,) = await manager.status()
    assert status.name == "git" and status.healthy is True
    with pytest.raises(ToolUnavailable, match="runs per task"):
        await manager.call("git", "git_status", {"repo_path": str(one)})


# -- a worktree's files make the git server run nothing ------------------------------


def plant_git_dir(where: Path, marker: Path, branch: str, source: Path | None = None) -> None:
    """A git directory whose config runs a command creating `marker` from every driver git
    has; with `source`, a bare copy of that repository (so diffs have something to show)."""
    if source is not None:
        git(source, "clone", "-q", "--bare", str(source), str(where))
        git(where, "branch", "-f", branch, "HEAD")
    else:
        for folder in ("objects/info", "refs/heads"):
            (where / folder).mkdir(parents=True)
    (where / "HEAD").write_text(f"ref: refs/heads/{branch}\n")
    command = f"touch {marker} #"
    (where / "config").write_text(
        f"[core]\n\trepositoryformatversion = 0\n\tfsmonitor = {command}\n"
        f"\tpager = {command}\n[diff]\n\texternal = {command}\n"
        f'[filter "evil"]\n\tclean = {command}\n\tsmudge = {command}\n'
        f'[diff "evil"]\n\ttextconv = {command}\n'
    )


@pytest.fixture
def worktree(tmp_path: Path) -> Path:
    """A linked worktree of a repository, on the branch `devteam/task`, as coders get."""
    repo = make_repo(tmp_path / "repo")
    path = tmp_path / "worktrees" / "task"
    git(repo, "worktree", "add", "-q", "-b", "devteam/task", str(path))
    return path


async def test_a_planted_gitfile_is_never_followed(
    make_manager: MakeManager, worktree: Path, tmp_path: Path, shipped_git: dict[str, object]
) -> None:
    """The attack: `.git` = `gitdir: .evil`, whose config has `core.fsmonitor`."""
    marker = tmp_path / "pwned"
    manager = make_manager({"git": shipped_git})
    async with manager.task_scope(worktree) as scope:  # pinned to the real git dir now
        plant_git_dir(worktree / ".evil", marker, "devteam/task", source=worktree)
        (worktree / ".gitattributes").write_text("* filter=evil diff=evil\n")
        (worktree / ".git").write_text("gitdir: .evil\n")
        (worktree / "app.py").write_text("print('changed')\n")
        for tool in ("git_status", "git_diff_unstaged", "git_log", "git_diff_staged"):
            result = await scope.call("git", tool, {"repo_path": str(worktree)})
            assert not marker.exists(), f"{tool} ran the planted command"
            if tool == "git_status":
                assert "On branch devteam/task" in result.text
                assert "app.py" in result.text
            if tool == "git_diff_unstaged":
                assert "+print('changed')" in result.text
    assert not marker.exists()


async def test_a_repository_in_a_subfolder_is_never_discovered(
    make_manager: MakeManager, tmp_path: Path, shipped_git: dict[str, object]
) -> None:
    repo = make_repo(tmp_path / "repo")
    marker = tmp_path / "pwned"
    plant_git_dir(repo / "vendor" / ".git", marker, "main")
    (repo / "vendor" / "lib.py").write_text("x = 1\n")
    manager = make_manager({"git": shipped_git})
    async with manager.task_scope(repo, git_dir=repo / ".git") as scope:
        for tool in ("git_status", "git_diff_unstaged", "git_log"):
            await scope.call("git", tool, {"repo_path": str(repo / "vendor")})
            assert not marker.exists(), f"{tool} ran the planted command"


async def test_the_git_server_gets_the_hardened_environment(
    make_manager: MakeManager, tmp_path: Path, shipped_git: dict[str, object]
) -> None:
    repo = make_repo(tmp_path / "repo")
    manager = make_manager({"git": shipped_git})
    async with manager.task_scope(repo, git_dir=repo / ".git") as scope:
        await scope.call("git", "git_status", {"repo_path": str(repo)})
        connection = scope.connection("git")
        assert connection is not None
        env = connection.instance.transport.env  # type: ignore[union-attr]
    assert env["GIT_DIR"] == str((repo / ".git").resolve())
    assert env["GIT_WORK_TREE"] == str(repo.resolve())
    assert env["GIT_CONFIG_NOSYSTEM"] == "1" and env["GIT_CONFIG_GLOBAL"] == "/dev/null"
    keys = {env[f"GIT_CONFIG_KEY_{i}"]: i for i in range(int(env["GIT_CONFIG_COUNT"]))}
    assert env[f"GIT_CONFIG_VALUE_{keys['core.fsmonitor']}"] == "false"
    assert env[f"GIT_CONFIG_VALUE_{keys['core.hooksPath']}"] == "/dev/null"
