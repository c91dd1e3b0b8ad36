"""No file a model writes in a worktree makes DevTeam's git run a command.

Each test plants one way a repository's own files can make git run something
(a `.git` naming a git directory whose config has `core.fsmonitor`, an embedded
repository, attributes naming a filter or diff driver, an include, hooks, …),
with a command that creates a marker file, then lets DevTeam run git there the
way it does when an attempt finishes. The marker must never appear; where the
worktree was tampered with, the attempt fails with `workspace_tampered`.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devteam.agents.git import GitError, Repository, git
from devteam.agents.workspaces import Workspaces, WorkspaceTampered, Worktree
from devteam.gitsafety import hardened_environment, process_environment
from devteam.settings.agents import GitConfig
from tests.sample_project import git as plain_git


@pytest.fixture
def repo(workspaces: Path) -> Path:
    return workspaces / "shop"


@pytest.fixture
def spaces(workspaces: Path) -> Workspaces:
    return Workspaces(workspaces, GitConfig())


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """A file only a planted command would create."""
    folder = tmp_path / f"marker-{uuid.uuid4().hex}"
    folder.mkdir()
    return folder / "pwned"


@pytest.fixture
async def tree(spaces: Workspaces, repo: Path) -> AsyncIterator[Worktree]:
    async with spaces.worktree(repo, uuid.uuid4()) as worktree:
        yield worktree


def command(marker: Path) -> str:
    """A shell command creating `marker` (git appends arguments: the comment eats them)."""
    return f"touch {marker} #"


def plant_git_dir(where: Path, marker: Path, branch: str) -> None:
    """A git directory whose config runs `marker`'s command from every hook git has."""
    hooks = where / "hooks"
    for folder in (where / "objects" / "info", where / "refs" / "heads", hooks):
        folder.mkdir(parents=True, exist_ok=True)
    (where / "HEAD").write_text(f"ref: refs/heads/{branch}\n")
    (where / "config").write_text(
        "[core]\n"
        "\trepositoryformatversion = 0\n"
        f"\tfsmonitor = {command(marker)}\n"
        f"\tpager = {command(marker)}\n"
        f"\teditor = {command(marker)}\n"
        f"\tsshCommand = {command(marker)}\n"
        f"\thooksPath = {hooks}\n"
        f"\tworktree = {marker.parent}\n"
        "[diff]\n"
        f"\texternal = {command(marker)}\n"
        '[filter "evil"]\n'
        f"\tclean = {command(marker)}\n"
        f"\tsmudge = {command(marker)}\n"
        '[diff "evil"]\n'
        f"\ttextconv = {command(marker)}\n"
    )
    for hook in ("pre-commit", "post-commit", "post-index-change", "reference-transaction"):
        script = hooks / hook
        script.write_text(f"#!/bin/sh\ntouch {marker}\n")
        script.chmod(0o755)


def evil_attributes(root: Path) -> None:
    (root / ".gitattributes").write_text("* filter=evil diff=evil\n")


async def finish_refused(tree: Worktree, marker: Path, match: str) -> None:
    with pytest.raises(WorkspaceTampered, match=match) as failed:
        await tree.finish("tampered")
    assert failed.value.error_code == "workspace_tampered"
    assert not marker.exists()


async def git_everywhere(tree: Worktree) -> None:
    """What DevTeam's git does on a worktree, without the tamper check in front (whether
    git succeeds does not matter here, only that it runs nothing)."""
    repo = tree.repository
    for args in (
        ("symbolic-ref", "-q", "HEAD"),
        ("status", "--porcelain"),
        ("add", "--all"),
        ("diff", "--no-ext-diff", "--no-textconv", "--cached"),
        ("diff", "--cached"),
        ("commit", "-q", "--allow-empty", "-m", "x"),
        ("log", "-p", "-1"),
    ):
        await git(repo, *args, check=False)


# -- a .git the model wrote ----------------------------------------------------------------


async def test_a_gitfile_pointing_at_a_planted_git_dir(tree: Worktree, marker: Path) -> None:
    """The reproduced attack: `.git` = `gitdir: .evil`, `.evil/config` has `core.fsmonitor`."""
    plant_git_dir(tree.path / ".evil", marker, tree.branch)
    (tree.path / ".git").write_text("gitdir: .evil\n")
    await git_everywhere(tree)
    assert not marker.exists()
    await finish_refused(tree, marker, "the worktree's .git was changed")


async def test_a_gitfile_pointing_at_an_absolute_planted_git_dir(
    tree: Worktree, marker: Path, tmp_path: Path
) -> None:
    plant_git_dir(tmp_path / "elsewhere", marker, tree.branch)
    (tree.path / ".git").write_text(f"gitdir: {tmp_path / 'elsewhere'}\n")
    await finish_refused(tree, marker, "the worktree's .git was changed")


async def test_the_gitfile_replaced_by_a_git_folder(tree: Worktree, marker: Path) -> None:
    (tree.path / ".git").unlink()
    plant_git_dir(tree.path / ".git", marker, tree.branch)
    await git_everywhere(tree)
    assert not marker.exists()
    await finish_refused(tree, marker, "the worktree's .git was changed")


async def test_the_gitfile_replaced_by_a_symlink(tree: Worktree, marker: Path) -> None:
    plant_git_dir(tree.path / ".evil", marker, tree.branch)
    original = (tree.path / ".git").read_text()
    (tree.path / "gitfile").write_text(original)
    (tree.path / ".git").unlink()
    (tree.path / ".git").symlink_to("gitfile")  # same text, through a link
    await finish_refused(tree, marker, "the worktree's .git was changed")


async def test_the_gitfile_removed(tree: Worktree, marker: Path) -> None:
    (tree.path / ".git").unlink()
    await finish_refused(tree, marker, "the worktree's .git was changed")


# -- repositories inside the worktree ------------------------------------------------------


@pytest.mark.parametrize(
    "where", ["vendor/lib/.git", "vendor/lib/.GIT", "deep/er/still/.Git", "src/git~1"]
)
async def test_an_embedded_repository(tree: Worktree, marker: Path, where: str) -> None:
    plant_git_dir(tree.path / where, marker, "main")
    (tree.path / where).parent.joinpath("lib.py").write_text("x = 1\n")
    await git_everywhere(tree)
    assert not marker.exists()
    await finish_refused(tree, marker, "the worktree holds a .git of its own")


async def test_an_embedded_gitfile(tree: Worktree, marker: Path) -> None:
    plant_git_dir(tree.path / "vendor" / "store", marker, "main")
    (tree.path / "vendor" / "lib").mkdir(parents=True)
    (tree.path / "vendor" / "lib" / ".git").write_text("gitdir: ../store\n")
    await git_everywhere(tree)
    assert not marker.exists()
    await finish_refused(tree, marker, "the worktree holds a .git of its own: vendor/lib/.git")


async def test_an_embedded_bare_repository_is_only_files(tree: Worktree, marker: Path) -> None:
    """A bare repository has no `.git` to spot; git never looks for one, so it is data."""
    plant_git_dir(tree.path / "fixtures" / "bare.git", marker, "main")
    evil_attributes(tree.path)
    change = await tree.finish("fixtures")
    assert not marker.exists()
    assert "fixtures/bare.git/config" in {f.path for f in change.files}


async def test_a_gitmodules_file_runs_nothing(tree: Worktree, marker: Path) -> None:
    (tree.path / ".gitmodules").write_text(
        '[submodule "lib"]\n\tpath = lib\n'
        f"\turl = ext::sh -c touch% {marker}\n"
        f"\tupdate = !{command(marker)}\n"
    )
    (tree.path / "lib").mkdir()
    (tree.path / "lib" / "a.py").write_text("a = 1\n")
    change = await tree.finish("submodule")
    assert not marker.exists()
    assert {".gitmodules", "lib/a.py"} <= {f.path for f in change.files}


# -- configuration git would read --------------------------------------------------------


async def test_attributes_cannot_reach_drivers_the_model_wrote(
    tree: Worktree, marker: Path
) -> None:
    """Attributes name drivers; their commands live in config, which is not the model's."""
    evil_attributes(tree.path)
    (tree.path / ".gitconfig").write_text(
        f'[filter "evil"]\n\tclean = {command(marker)}\n'
        f'[diff "evil"]\n\ttextconv = {command(marker)}\n'
    )
    (tree.path / "app.txt").write_text("hello\n")
    change = await tree.finish("attributes")
    assert not marker.exists()
    assert "+hello" in change.diff


async def test_diff_drivers_of_the_repository_config_never_run(
    spaces: Workspaces, repo: Path, marker: Path
) -> None:
    """An external diff or textconv in the project's config: DevTeam's diffs skip them."""
    plain_git(repo, "config", "diff.external", command(marker))
    plain_git(repo, "config", "diff.evil.textconv", command(marker))
    plain_git(repo, "config", "diff.evil.command", command(marker))
    async with spaces.worktree(repo, uuid.uuid4()) as tree:
        (tree.path / ".gitattributes").write_text("* diff=evil\n")
        (tree.path / "app.txt").write_text("hello\n")
        change = await tree.finish("drivers")
    assert not marker.exists()
    assert "+hello" in change.diff


@pytest.mark.parametrize("include", ["include.path", "includeIf.onbranch:devteam/**.path"])
async def test_configuration_included_from_a_worktree(
    spaces: Workspaces, repo: Path, marker: Path, include: str
) -> None:
    """The project's config includes a file inside a worktree: the model could write it."""
    task_id = uuid.uuid4()
    planted = spaces.worktrees.resolve() / str(task_id) / "devteam.gitconfig"
    plain_git(repo, "config", include, str(planted))
    async with spaces.worktree(repo, task_id) as tree:
        assert tree.path / "devteam.gitconfig" == planted
        planted.write_text(f'[filter "evil"]\n\tclean = {command(marker)}\n')
        evil_attributes(tree.path)
        await finish_refused(tree, marker, "git would read configuration from a worktree")


async def test_the_repository_config_and_hooks_run_nothing(
    spaces: Workspaces, repo: Path, marker: Path
) -> None:
    """Hooks, fsmonitor, pager and editor of the project itself stay off too, and a
    `core.worktree` there does not move the work tree DevTeam names."""
    for key in ("core.fsmonitor", "core.pager", "core.editor", "sequence.editor"):
        plain_git(repo, "config", key, command(marker))
    plain_git(repo, "config", "core.worktree", str(marker.parent))
    hooks = repo / ".git" / "hooks"
    for hook in ("post-checkout", "pre-commit", "post-commit", "reference-transaction"):
        (hooks / hook).write_text(f"#!/bin/sh\ntouch {marker}\n")
        (hooks / hook).chmod(0o755)
    async with spaces.worktree(repo, uuid.uuid4()) as tree:
        (tree.path / "app.txt").write_text("hello\n")
        change = await tree.finish("with hooks")
        assert (await git(tree.repository, "var", "GIT_EDITOR")).strip() == "true"
        assert (await git(tree.repository, "var", "GIT_PAGER")).strip() == "cat"
    assert change.head_commit is not None
    assert [f.path for f in change.files] == ["app.txt"]
    assert not marker.exists()


async def test_git_variables_of_our_environment_are_not_passed_on(
    tree: Worktree, marker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant_git_dir(tree.path.parent / "planted", marker, tree.branch)
    monkeypatch.setenv("GIT_DIR", str(tree.path.parent / "planted"))
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", f"'core.fsmonitor'='{command(marker)}'")
    monkeypatch.setenv("GIT_EXTERNAL_DIFF", command(marker))
    (tree.path / "app.txt").write_text("hello\n")
    change = await tree.finish("environment")
    assert change.head_commit is not None
    assert not marker.exists()


# -- transports ----------------------------------------------------------------------------


async def test_no_transport_unless_allowed(repo: Path, tmp_path: Path, marker: Path) -> None:
    project = Repository.checkout(repo)
    with pytest.raises(GitError, match="transport 'file' not allowed"):
        await git(project, "ls-remote", str(repo))
    assert "refs/heads/main" in await git(project, "ls-remote", str(repo), protocols=["file"])
    with pytest.raises(GitError, match="transport 'ext' not allowed"):
        await git(project, "ls-remote", f"ext::sh -c touch% {marker}", protocols=["file"])
    assert not marker.exists()


async def test_the_repository_ssh_command_never_runs(repo: Path, marker: Path) -> None:
    plain_git(repo, "config", "core.sshCommand", command(marker))
    plain_git(repo, "config", "core.gitProxy", command(marker))
    project = Repository.checkout(repo)
    for url in ("ssh://127.0.0.1:9/nothing.git", "git://127.0.0.1:9/nothing.git"):
        with pytest.raises(GitError):
            await git(project, "ls-remote", url, protocols=["ssh", "git"])
    assert not marker.exists()
    # The operator's own ssh command (GitConfig.ssh_command) is the one git runs.
    operators = marker.with_name("operators-ssh")
    with pytest.raises(GitError):
        await git(
            project,
            "ls-remote",
            "ssh://127.0.0.1:9/nothing.git",
            protocols=["ssh"],
            ssh_command=command(operators),
        )
    assert operators.exists() and not marker.exists()


def test_the_hardened_environment(tmp_path: Path) -> None:
    env = hardened_environment(git_dir=tmp_path / "g", work_tree=tmp_path / "w")
    overrides = {
        env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"]
        for i in range(int(env["GIT_CONFIG_COUNT"]))
    }
    assert overrides["core.hooksPath"] == "/dev/null"
    assert overrides["core.fsmonitor"] == "false"
    assert overrides["protocol.allow"] == "never"
    assert overrides["core.sshCommand"] == "ssh"
    assert not any(key.startswith("protocol.") and key != "protocol.allow" for key in overrides)
    assert env["GIT_CONFIG_NOSYSTEM"] == "1" and env["GIT_CONFIG_GLOBAL"] == "/dev/null"
    assert env["GIT_DIR"] == str(tmp_path / "g") and env["GIT_WORK_TREE"] == str(tmp_path / "w")
    allowed = hardened_environment(protocols=["https", "ssh"], ssh_command="ssh -i key")
    assert "GIT_DIR" not in allowed
    assert allowed["GIT_SSH_COMMAND"] == "ssh -i key"
    with pytest.raises(ValueError, match="unknown git protocols: ext"):
        hardened_environment(protocols=["ext"])
    inherited = process_environment({"PATH": "/bin", "GIT_DIR": "/x", "SSH_ASKPASS": "/y"})
    assert inherited["PATH"] == "/bin"
    assert "GIT_DIR" not in inherited and "SSH_ASKPASS" not in inherited


def test_git_reads_no_global_or_system_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, marker: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(f"[core]\n\tfsmonitor = {command(marker)}\n")
    monkeypatch.setenv("HOME", str(home))
    shown = subprocess.run(
        ["git", "config", "--get", "core.fsmonitor"],
        env=process_environment(None),
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert shown.stdout.strip() == "false"
    listed = subprocess.run(
        ["git", "config", "--list", "--show-origin"],
        env=process_environment(None),
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert ".gitconfig" not in listed.stdout
