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
