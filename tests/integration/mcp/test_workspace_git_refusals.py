"""The workspace server refuses every write, patch, rename or delete through a `.git`.

A `.git` file or folder planted in a worktree would make git read a config the
model wrote (`core.fsmonitor = <command>`), so none may be made, changed or
removed, however it is spelled and whichever route leads there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mcp import Client

from devteam.mcp.workspace import create_workspace_server
from tests.integration.mcp.conftest import WorkspaceFolders, held_open
from tests.integration.mcp.test_workspace_server import ok, refused

REASON = ".git is refused"
GITDIR_FILE = "gitdir: .evil\n"
FSMONITOR = "[core]\n\tfsmonitor = touch /tmp/pwned\n"


@pytest.fixture
def root(folders: WorkspaceFolders) -> Path:
    """The workspace as a worktree: its `.git` file (git's), a symlink to it, one to a folder."""
    root = folders.root
    (root / ".git").write_text("gitdir: /somewhere/.git/worktrees/task\n")
    (root / "dotgit").symlink_to(".git")
    (root / "sub").mkdir()
    (root / "sub" / "nested").symlink_to(root / "sub", target_is_directory=True)
    (root / "evil.txt").write_text(GITDIR_FILE)
    return root


@pytest.fixture
async def client(root: Path) -> AsyncIterator[Client]:
    async with held_open(Client(create_workspace_server(root), cache=None)) as connected:
        yield connected


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` (symlinks not followed) with its content."""
    return {
        p.relative_to(root).as_posix(): p.read_text(errors="replace") if p.is_file() else "<dir>"
        for p in sorted(root.rglob("*"))
        if not p.is_symlink()
    }


DOT_GIT_PATHS = [
    pytest.param(".git", id="the-gitfile"),
    pytest.param(".git/config", id="inside-a-git-folder"),
    pytest.param(".GIT/config", id="upper-case"),
    pytest.param(".Git", id="mixed-case"),
    pytest.param(".git./config", id="trailing-dot"),
    pytest.param(".git /config", id="trailing-space"),
    pytest.param("git~1/config", id="ntfs-short-name"),
    pytest.param(".git::$INDEX_ALLOCATION/config", id="ntfs-stream"),
    pytest.param(".g\u200cit/config", id="hfs-ignorable"),
    pytest.param("sub/.git", id="nested-gitfile"),
    pytest.param("sub/.git/config", id="nested-git-folder"),
    pytest.param("a/b/.GIT/HEAD", id="deep-upper-case"),
    pytest.param("sub\\.git\\config", id="backslashes"),
    pytest.param("./.git", id="dot-prefix"),
    pytest.param("sub/nested/.git", id="through-a-symlinked-folder"),
    pytest.param("dotgit", id="symlink-to-the-gitfile"),
]


@pytest.mark.parametrize("path", DOT_GIT_PATHS)
async def test_writing_a_dot_git_path_is_refused(client: Client, root: Path, path: str) -> None:
    before = snapshot(root)
    assert REASON in await refused(client, "write_file", path=path, content=GITDIR_FILE)
    created = f"--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+gitdir: .evil\n"
    assert REASON in await refused(client, "apply_patch", diff=created)
    assert snapshot(root) == before


@pytest.mark.parametrize("path", DOT_GIT_PATHS)
async def test_renaming_onto_a_dot_git_path_is_refused(
    client: Client, root: Path, path: str
) -> None:
    before = snapshot(root)
    renamed = (
        f"diff --git a/evil.txt b/{path}\nrename from evil.txt\nrename to {path}\n"
        f"--- a/evil.txt\n+++ b/{path}\n@@ -1 +1 @@\n-gitdir: .evil\n+gitdir: .evil\n"
    )
    assert REASON in await refused(client, "apply_patch", diff=renamed)
    quoted = f'--- "a/evil.txt"\n+++ "b/{path}"\n@@ -1 +1 @@\n-gitdir: .evil\n+gitdir: .evil\n'
    assert REASON in await refused(client, "apply_patch", diff=quoted)
    assert snapshot(root) == before


async def test_patching_renaming_or_deleting_the_gitfile_is_refused(
    client: Client, root: Path
) -> None:
    before = snapshot(root)
    line = "-gitdir: /somewhere/.git/worktrees/task"
    patched = f"--- a/.git\n+++ b/.git\n@@ -1 +1 @@\n{line}\n+gitdir: .evil\n"
    moved = f"--- a/.git\n+++ b/moved\n@@ -1 +1 @@\n{line}\n+gitdir: .evil\n"
    deleted = "--- a/.git\n+++ /dev/null\n"
    through_link = f"--- a/dotgit\n+++ b/dotgit\n@@ -1 +1 @@\n{line}\n+gitdir: .evil\n"
    for diff in (patched, moved, deleted, through_link):
        assert REASON in await refused(client, "apply_patch", diff=diff)
    assert snapshot(root) == before


async def test_one_refused_file_refuses_the_whole_patch(client: Client, root: Path) -> None:
    diff = (
        "--- /dev/null\n+++ b/.evil/config\n@@ -0,0 +2 @@\n+[core]\n+\tfsmonitor = touch x\n"
        "--- /dev/null\n+++ b/.evil/HEAD\n@@ -0,0 +1 @@\n+ref: refs/heads/main\n"
        "--- a/evil.txt\n+++ b/.git\n@@ -1 +1 @@\n-gitdir: .evil\n+gitdir: .evil\n"
    )
    assert REASON in await refused(client, "apply_patch", diff=diff)
    assert not (root / ".evil").exists()


async def test_names_that_only_look_like_git_are_writable(client: Client, root: Path) -> None:
    for path in (".gitignore", ".gitattributes", ".github/workflows/ci.yml", "git/x", "a.git"):
        await ok(client, "write_file", path=path, content="fine\n")
        assert (root / path).read_text() == "fine\n"
    # Reading the worktree's .git stays possible: only changing it is refused.
    assert "gitdir:" in await ok(client, "read_file", path=".git")
