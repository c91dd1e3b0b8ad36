"""Projects and the coders' git worktrees.

A `project_id` names a git repository at `$DEVTEAM_WORKSPACES_ROOT/<project_id>`.
A coder never works in that checkout: each attempt gets its own worktree
(`<workspaces root>/.worktrees/<task id>`, see agents.yaml `git`) on the branch
`devteam/<task id>`, started from the project's current commit. Its change is
committed on that branch; the worktree is removed after the attempt and the
branch stays. A retried attempt starts over: the branch is reset to the new
base. A revision after a review continues the earlier change's branch from its
head (`Resume`). The user's checked-out branch, index and files are never touched.

The worktree's files are the model's; its git directory
(`<repo>/.git/worktrees/<name>`) and the repository's config are not. Every git
command names that git directory and the work tree (`agents.git.Repository`), so
the `.git` file in the worktree is never followed. Before DevTeam runs git on a
finished worktree it checks that nothing was planted for git to find
(`Worktree.verify`): the `.git` file still says what git wrote, no other `.git`
lies anywhere in the tree, and no configuration git reads lies inside a worktree.
Otherwise the attempt fails with `workspace_tampered`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from devteam.agents.git import GitError, Repository, git, succeeds
from devteam.agents.models import FileChange, FileStatus
from devteam.domain.agents import AgentFailed
from devteam.domain.errors import ErrorCode
from devteam.gitsafety import is_dot_git
from devteam.observability.logging import get_logger
from devteam.settings.agents import GitConfig

log = get_logger(__name__)

STATUS: dict[str, FileStatus] = {
    "A": "added",
    "M": "modified",
    "D": "deleted",
    "R": "renamed",
    "C": "copied",
    "T": "type_changed",
}


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """What a worktree holds beyond its base commit."""

    head_commit: str | None
    diff: str
    files: list[FileChange]


class WorkspaceTampered(AgentFailed):
    """Something in a worktree would make git read what DevTeam did not write."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.WORKSPACE_TAMPERED, message)


@dataclass(frozen=True, slots=True)
class GitLink:
    """What git wrote in a new worktree's `.git` file, and the git directory it names."""

    text: bytes
    git_dir: Path


@dataclass(frozen=True, slots=True)
class Resume:
    """An earlier change that a new attempt continues (after a review asked for changes)."""

    branch: str
    base_commit: str


class Worktree:
    """One attempt's worktree. Run any other git on it as `git(tree.repository, ...)`,
    after `await tree.verify()` once the model has had it."""

    def __init__(
        self,
        repo: Path,
        path: Path,
        branch: str,
        base_commit: str,
        config: GitConfig,
        link: GitLink,
        untrusted: Path | None = None,
    ) -> None:
        self.repo = repo
        """The project's repository (the user's checkout)."""
        self.path = path
        self.branch = branch
        self.base_commit = base_commit
        self._config = config
        self._link = link
        self._untrusted = untrusted or path
        """Where models write (every worktree): no configuration git reads may lie there."""

    @property
    def git_dir(self) -> Path:
        """The worktree's git directory, as git created it (`<repo>/.git/worktrees/<name>`)."""
        return self._link.git_dir

    @property
    def repository(self) -> Repository:
        """The worktree named explicitly: what every git command on it runs with."""
        return Repository(self.git_dir, self.path)

    async def verify(self) -> None:
        """`WorkspaceTampered` unless git would find only what DevTeam put here."""
        dot_git = self.path / ".git"
        try:
            intact = not dot_git.is_symlink() and dot_git.read_bytes() == self._link.text
        except OSError:
            intact = False
        if not intact:
            raise WorkspaceTampered(
                f"the worktree's .git was changed: it no longer names {self.git_dir}"
            )
        if planted := await asyncio.to_thread(_nested_git, self.path):
            raise WorkspaceTampered(f"the worktree holds a .git of its own: {planted}")
        for origin in await _config_files(self.repository):
            if origin.is_relative_to(self._untrusted):
                raise WorkspaceTampered(f"git would read configuration from a worktree: {origin}")

    async def untracked(self) -> list[str]:
        """Untracked, not ignored paths of the worktree (a new folder as one `dir/`)."""
        listing = await git(
            self.repository, "status", "--porcelain", "-z", "--untracked-files=normal"
        )
        return [entry[3:] for entry in listing.split("\0") if entry.startswith("?? ")]

    async def finish(
        self, subject: str, body: str = "", leave_out: Sequence[str] = ()
    ) -> ChangeSet:
        """Commit everything the attempt changed on its branch; the change from the base.

        `leave_out`: untracked paths that are not the change (what the project's set-up
        and checks left in the worktree)."""
        await self.verify()
        repo = self.repository
        ref = (await git(repo, "symbolic-ref", "-q", "HEAD", check=False)).strip()
        if ref != f"refs/heads/{self.branch}":
            raise AgentFailed(
                ErrorCode.AGENT_ERROR,
                f"the worktree left its branch {self.branch} (HEAD is {ref or 'detached'})",
            )
        excluded = [f":(exclude,literal,top){path}" for path in leave_out]
        await git(repo, "add", "--all", "--", ".", *excluded)
        if not await succeeds(repo, "diff", *DIFF_OPTIONS, "--cached", "--quiet"):
            config = self._config
            await git(
                repo,
                "-c",
                f"user.name={config.author_name}",
                "-c",
                f"user.email={config.author_email}",
                "-c",
                "commit.gpgsign=false",
                "commit",
                "--quiet",
                "--no-verify",
                "-m",
                subject,
                *(("-m", body) if body.strip() else ()),
            )
        head = (await git(repo, "rev-parse", "HEAD")).strip()
        if head == self.base_commit:
            return ChangeSet(head_commit=None, diff="", files=[])
        diff = await git(repo, "diff", *DIFF_OPTIONS, "--binary", self.base_commit, head)
        files = await changed_files(repo, self.base_commit, head)
        return ChangeSet(head_commit=head, diff=diff, files=files)


DIFF_OPTIONS = ("--no-color", "--no-ext-diff", "--no-textconv", "--ignore-submodules=all")
"""Every diff DevTeam takes: no program named in configuration or attributes runs."""


def _nested_git(root: Path) -> str | None:
    """The first `.git` below `root` (its own `.git` file aside), relative to it."""
    for directory, folders, files in os.walk(root, followlinks=False):
        top = directory == str(root)
        for name in (*folders, *files):
            if is_dot_git(name) and not (top and name == ".git"):
                return Path(directory, name).relative_to(root).as_posix()
    return None


async def _config_files(repo: Repository) -> list[Path]:
    """Every configuration file git reads for `repo`, includes followed."""
    listing = await git(repo, "config", "--list", "--show-origin", "--includes", "-z")
    fields = listing.split("\0")
    origins = {fields[i] for i in range(0, len(fields) - 1, 2)}
    return sorted(
        Path(origin.removeprefix("file:")).resolve()
        for origin in origins
        if origin.startswith("file:")
    )


async def changed_files(repo: Repository, base: str, head: str) -> list[FileChange]:
    options = (*DIFF_OPTIONS, "-z", "-M")
    statuses = (await git(repo, "diff", "--name-status", *options, base, head)).split("\0")
    counts = (await git(repo, "diff", "--numstat", *options, base, head)).split("\0")
    lines: dict[str, tuple[int, int]] = {}
    i = 0
    while i < len(counts) and counts[i]:
        added, deleted, path = counts[i].split("\t", 2)
        if not path:  # a rename: the old and new paths follow
            path = counts[i + 2]
            i += 2
        lines[path] = (int(added) if added != "-" else 0, int(deleted) if deleted != "-" else 0)
        i += 1
    files: list[FileChange] = []
    i = 0
    while i < len(statuses) and statuses[i]:
        code = statuses[i][0]
        old_path = None
        if code in "RC":
            old_path, path = statuses[i + 1], statuses[i + 2]
            i += 3
        else:
            path = statuses[i + 1]
            i += 2
        additions, deletions = lines.get(path, (0, 0))
        files.append(
            FileChange(
                path=path,
                status=STATUS.get(code, "modified"),
                additions=additions,
                deletions=deletions,
                old_path=old_path,
            )
        )
    return files


class Workspaces:
    def __init__(self, root: Path, config: GitConfig) -> None:
        self.root = root
        self.config = config
        worktrees = Path(config.worktrees_dir)
        self.worktrees = worktrees if worktrees.is_absolute() else root / worktrees
        self._locks: dict[Path, asyncio.Lock] = {}

    def project_path(self, project_id: str) -> Path:
        return self.root / project_id

    def check(self, project_id: str) -> str | None:
        """Why `project_id` cannot be worked on, or None when it can (no I/O beyond a stat)."""
        path = self.project_path(project_id)
        if not (path / ".git").exists():
            return f"project {project_id!r} does not exist: no git repository at {path}"
        return None

    def require(self, project_id: str | None, who: str) -> Path:
        """The project's repository; a task without a usable one fails for good."""
        if project_id is None:
            raise AgentFailed(
                ErrorCode.VALIDATION_ERROR,
                f"the {who} works on a project: submit the task with a project_id",
            )
        if (reason := self.check(project_id)) is not None:
            raise AgentFailed(ErrorCode.VALIDATION_ERROR, reason)
        return self.project_path(project_id).resolve()

    def branch_for(self, task_id: UUID) -> str:
        return f"{self.config.branch_prefix}{task_id}"

    @asynccontextmanager
    async def worktree(
        self, repo: Path, task_id: UUID, *, resume: Resume | None = None
    ) -> AsyncIterator[Worktree]:
        """A fresh worktree of `repo` at its current commit, removed on the way out.

        With `resume`, the worktree continues an earlier change instead: it is on
        that change's branch at the branch's head, and its diff counts from the
        change's base commit.
        """
        project = Repository.checkout(repo)
        if resume is None:
            base = start = await self._base_commit(project)
            branch = self.branch_for(task_id)
        else:
            base, branch = resume.base_commit, resume.branch
            start = await self._branch_head(project, branch)
        path = (self.worktrees / str(task_id)).resolve()
        lock = self._locks.setdefault(repo, asyncio.Lock())
        async with lock:
            await self._remove(project, path)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                await git(project, "worktree", "add", "--quiet", "-B", branch, str(path), start)
            except GitError as exc:
                raise AgentFailed(
                    ErrorCode.AGENT_ERROR, f"cannot create the worktree: {exc.stderr}"
                ) from None
            try:
                link = await self._link(project, path)
            except BaseException:
                await self._remove(project, path)
                raise
        log.info("worktree created", path=str(path), branch=branch, base=base)
        try:
            yield Worktree(repo, path, branch, base, self.config, link, self.worktrees.resolve())
        finally:
            # Shielded: a cancelled attempt still removes its worktree (the branch stays).
            await asyncio.shield(self._remove_locked(project, path, lock))

    async def _link(self, project: Repository, path: Path) -> GitLink:
        """The git directory git just made for the worktree at `path`, read before any
        model has touched it, and checked to belong to the project."""
        common = Path(
            (await git(project, "rev-parse", "--path-format=absolute", "--git-common-dir")).strip()
        ).resolve()
        text = (path / ".git").read_bytes()
        written = text.decode(errors="replace").strip().removeprefix("gitdir:").strip()
        git_dir = (path / written).resolve()
        back = git_dir / "gitdir"
        if (
            git_dir.parent != common / "worktrees"
            or not back.is_file()
            or Path(back.read_text().strip()).resolve() != (path / ".git").resolve()
        ):
            raise AgentFailed(
                ErrorCode.AGENT_ERROR, f"git made the worktree at {path} with an unexpected .git"
            )
        return GitLink(text, git_dir)

    @asynccontextmanager
    async def snapshot(self, repo: Path, task_id: UUID, commit: str) -> AsyncIterator[Path]:
        """A read-only look at `commit`: a detached worktree, removed on the way out."""
        project = Repository.checkout(repo)
        path = (self.worktrees / str(task_id)).resolve()
        lock = self._locks.setdefault(repo, asyncio.Lock())
        async with lock:
            await self._remove(project, path)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                await git(project, "worktree", "add", "--quiet", "--detach", str(path), commit)
            except GitError as exc:
                raise AgentFailed(
                    ErrorCode.AGENT_ERROR, f"cannot check out {commit}: {exc.stderr}"
                ) from None
        try:
            yield path
        finally:
            await asyncio.shield(self._remove_locked(project, path, lock))

    async def _branch_head(self, project: Repository, branch: str) -> str:
        try:
            ref = f"refs/heads/{branch}^{{commit}}"
            return (await git(project, "rev-parse", "--verify", "--quiet", ref)).strip()
        except GitError:
            raise AgentFailed(
                ErrorCode.VALIDATION_ERROR, f"the branch {branch} to continue does not exist"
            ) from None

    async def _base_commit(self, project: Repository) -> str:
        try:
            return (await git(project, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")).strip()
        except GitError:
            raise AgentFailed(
                ErrorCode.VALIDATION_ERROR,
                f"the repository at {project.work_tree} has no commit to start from",
            ) from None

    async def _remove_locked(self, project: Repository, path: Path, lock: asyncio.Lock) -> None:
        async with lock:
            await self._remove(project, path)

    async def _remove(self, project: Repository, path: Path) -> None:
        """Remove a worktree (also one a crashed attempt left behind); keep its branch."""
        if path.exists():
            try:
                await git(project, "worktree", "remove", "--force", "--force", str(path))
            except GitError as exc:
                log.warning("git could not remove a worktree; deleting it", error=exc.stderr)
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(shutil.rmtree, path)
        await git(project, "worktree", "prune", check=False)
