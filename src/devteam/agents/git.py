"""Running `git` as a subprocess, cancellably, on a repository named explicitly.

Every call names its git directory and work tree (`--git-dir`, `--work-tree`):
git never discovers a repository, so a `.git` written into a worktree is never
read. Every call runs in the hardened environment of `devteam.gitsafety` (no
hooks, fsmonitor, pagers, editors, askpass, external tools, system or global
configuration, none of our own `GIT_*` variables).

A cancelled call kills its process and waits for it, so nothing is left running
behind a cancelled task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from devteam.gitsafety import process_environment


class GitError(RuntimeError):
    def __init__(self, args: tuple[str, ...], returncode: int, stderr: str) -> None:
        self.command = "git " + " ".join(args)
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(f"{self.command} failed ({returncode}): {self.stderr or 'no message'}")


@dataclass(frozen=True, slots=True)
class Repository:
    """A git directory and its work tree, both named by DevTeam, never discovered."""

    git_dir: Path
    work_tree: Path | None = None
    """None for commands that need no work tree."""

    @classmethod
    def checkout(cls, path: Path) -> Repository:
        """A project's own checkout: `path/.git` (a folder, or a file git follows) and `path`."""
        return cls(path / ".git", path)

    @property
    def cwd(self) -> Path:
        return self.work_tree if self.work_tree is not None else self.git_dir

    def command(self, *args: str) -> list[str]:
        tree = () if self.work_tree is None else (f"--work-tree={self.work_tree}",)
        return ["git", f"--git-dir={self.git_dir}", *tree, *args]

    def environment(
        self,
        extra: Mapping[str, str] | None = None,
        protocols: Iterable[str] = (),
        ssh_command: str | None = None,
    ) -> dict[str, str]:
        env = process_environment(
            git_dir=self.git_dir,
            work_tree=self.work_tree,
            protocols=protocols,
            ssh_command=ssh_command,
        )
        env.update(extra or {})
        return env


async def git(
    repo: Repository,
    *args: str,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    protocols: Iterable[str] = (),
    ssh_command: str | None = None,
) -> str:
    """`git args...` on `repo`; its stdout, or `GitError` when it fails (with `check`).

    `protocols` are the transports the call may use (see `gitsafety.PROTOCOLS`);
    `ssh_command` is the operator's (`GitConfig.ssh_command`), for calls reaching
    a remote over ssh.
    """
    process = await asyncio.create_subprocess_exec(
        *repo.command(*args),
        cwd=repo.cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=repo.environment(env, protocols, ssh_command),
    )
    try:
        stdout, stderr = await process.communicate()
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    if check and process.returncode != 0:
        raise GitError(args, process.returncode or 0, stderr.decode(errors="replace"))
    return stdout.decode(errors="replace")


async def clone(
    url: str,
    destination: Path,
    *options: str,
    protocols: Iterable[str],
    ssh_command: str | None = None,
) -> None:
    """`git clone options... -- url destination`, in the hardened environment, allowing
    only `protocols`; `GitError` when it fails. Submodules are never cloned."""
    args = ("clone", "--quiet", "--no-recurse-submodules", *options, "--", url, str(destination))
    process = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=destination.parent,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=process_environment(protocols=protocols, ssh_command=ssh_command),
    )
    try:
        _, stderr = await process.communicate()
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    if process.returncode != 0:
        raise GitError(args, process.returncode or 0, stderr.decode(errors="replace"))


async def succeeds(repo: Repository, *args: str) -> bool:
    """Whether `git args...` on `repo` exits 0."""
    process = await asyncio.create_subprocess_exec(
        *repo.command(*args),
        cwd=repo.cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=repo.environment(),
    )
    try:
        return await process.wait() == 0
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
