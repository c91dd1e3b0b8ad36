"""Projects and the coders' git worktrees.

A `project_id` names a git repository at `$DEVTEAM_WORKSPACES_ROOT/<project_id>`.
A coder never works in that checkout: each attempt gets its own worktree
(`<workspaces root>/.worktrees/<task id>`, see agents.yaml `git`) on the branch
`devteam/<task id>`, started from the project's current commit. Its change is
committed on that branch; the worktree is removed after the attempt and the
branch stays. A retried attempt starts over: the branch is reset to the new
base. A revision after a review continues the earlier change's branch from its
head (`Resume`). The user's checked-out branch, index and files are never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from devteam.agents.git import GitError, git, succeeds
from devteam.agents.models import FileChange, FileStatus
from devteam.domain.agents import AgentFailed
from devteam.domain.errors import ErrorCode
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


@dataclass(frozen=True, slots=True)
class Resume:
    """An earlier change that a new attempt continues (after a review asked for changes)."""

    branch: str
    base_commit: str


class Worktree:
    def __init__(
        self, repo: Path, path: Path, branch: str, base_commit: str, config: GitConfig
    ) -> None:
        self.repo = repo
        """The project's repository (the user's checkout)."""
        self.path = path
        self.branch = branch
        self.base_commit = base_commit
        self._config = config

    async def untracked(self) -> list[str]:
        """Untracked, not ignored paths of the worktree (a new folder as one `dir/`)."""
        listing = await git(self.path, "status", "--porcelain", "-z", "--untracked-files=normal")
        return [entry[3:] for entry in listing.split("\0") if entry.startswith("?? ")]

    async def finish(
        self, subject: str, body: str = "", leave_out: Sequence[str] = ()
    ) -> ChangeSet:
        """Commit everything the attempt changed on its branch; the change from the base.

        `leave_out`: untracked paths that are not the change (what the project's set-up
        and checks left in the worktree)."""
        ref = (await git(self.path, "symbolic-ref", "-q", "HEAD", check=False)).strip()
        if ref != f"refs/heads/{self.branch}":
            raise AgentFailed(
                ErrorCode.AGENT_ERROR,
                f"the worktree left its branch {self.branch} (HEAD is {ref or 'detached'})",
            )
        excluded = [f":(exclude,literal,top){path}" for path in leave_out]
        await git(self.path, "add", "--all", "--", ".", *excluded)
        if not await succeeds(self.path, "diff", "--cached", "--quiet"):
            config = self._config
            await git(
                self.path,
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
        head = (await git(self.path, "rev-parse", "HEAD")).strip()
        if head == self.base_commit:
            return ChangeSet(head_commit=None, diff="", files=[])
        diff = await git(
            self.path, "diff", "--binary", "--no-color", "--no-ext-diff", self.base_commit, head
        )
        files = await changed_files(self.path, self.base_commit, head)
        return ChangeSet(head_commit=head, diff=diff, files=files)


async def changed_files(repo: Path, base: str, head: str) -> list[FileChange]:
    statuses = (await git(repo, "diff", "--name-status", "-z", "-M", base, head)).split("\0")
    counts = (await git(repo, "diff", "--numstat", "-z", "-M", base, head)).split("\0")
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
        if resume is None:
            base = start = await self._base_commit(repo)
            branch = self.branch_for(task_id)
        else:
            base, branch = resume.base_commit, resume.branch
            start = await self._branch_head(repo, branch)
        path = (self.worktrees / str(task_id)).resolve()
        lock = self._locks.setdefault(repo, asyncio.Lock())
        async with lock:
            await self._remove(repo, path)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                await git(repo, "worktree", "add", "--quiet", "-B", branch, str(path), start)
            except GitError as exc:
                raise AgentFailed(
                    ErrorCode.AGENT_ERROR, f"cannot create the worktree: {exc.stderr}"
                ) from None
        log.info("worktree created", path=str(path), branch=branch, base=base)
        try:
            yield Worktree(repo, path, branch, base, self.config)
        finally:
            # Shielded: a cancelled attempt still removes its worktree (the branch stays).
            await asyncio.shield(self._remove_locked(repo, path, lock))

    @asynccontextmanager
    async def snapshot(self, repo: Path, task_id: UUID, commit: str) -> AsyncIterator[Path]:
        """A read-only look at `commit`: a detached worktree, removed on the way out."""
        path = (self.worktrees / str(task_id)).resolve()
        lock = self._locks.setdefault(repo, asyncio.Lock())
        async with lock:
            await self._remove(repo, path)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                await git(repo, "worktree", "add", "--quiet", "--detach", str(path), commit)
            except GitError as exc:
                raise AgentFailed(
                    ErrorCode.AGENT_ERROR, f"cannot check out {commit}: {exc.stderr}"
                ) from None
        try:
            yield path
        finally:
            await asyncio.shield(self._remove_locked(repo, path, lock))

    async def _branch_head(self, repo: Path, branch: str) -> str:
        try:
            ref = f"refs/heads/{branch}^{{commit}}"
            return (await git(repo, "rev-parse", "--verify", "--quiet", ref)).strip()
        except GitError:
            raise AgentFailed(
                ErrorCode.VALIDATION_ERROR, f"the branch {branch} to continue does not exist"
            ) from None

    async def _base_commit(self, repo: Path) -> str:
        try:
            return (await git(repo, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")).strip()
        except GitError:
            raise AgentFailed(
                ErrorCode.VALIDATION_ERROR, f"the repository at {repo} has no commit to start from"
            ) from None

    async def _remove_locked(self, repo: Path, path: Path, lock: asyncio.Lock) -> None:
        async with lock:
            await self._remove(repo, path)

    async def _remove(self, repo: Path, path: Path) -> None:
        """Remove a worktree (also one a crashed attempt left behind); keep its branch."""
        if path.exists():
            try:
                await git(repo, "worktree", "remove", "--force", "--force", str(path))
            except GitError as exc:
                log.warning("git could not remove a worktree; deleting it", error=exc.stderr)
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(shutil.rmtree, path)
        await git(repo, "worktree", "prune", check=False)
