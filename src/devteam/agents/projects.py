"""Projects: clone a repository into the workspaces folder, refresh it, remove it.

A project is `$DEVTEAM_WORKSPACES_ROOT/<name>`, the folder `Workspaces` looks a
`project_id` up in, so a cloned project is worked on exactly like a repository
placed there by hand (those keep working and are listed as not `managed`).

A clone runs in the background: into a hidden folder next to its destination,
renamed into place only when complete, so a half-done clone is never taken for a
project. git runs with a hardened environment: only the transports allowed
(`git`, `https`, `ssh`, and `file` with `projects.allow_local`; never `ext::`
and the like), no prompts, no system or user config, no hooks, ssh in batch mode.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import importlib
import re
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from devteam.agents.git import GitError, Repository, clone, git
from devteam.domain.audit import AuditOutcome
from devteam.domain.errors import Conflict, NotFound, ValidationFailed
from devteam.domain.projects import Commit, Project, ProjectState, ProjectView
from devteam.domain.users import User
from devteam.observability.logging import get_logger
from devteam.security.audit import AuditAction, Auditor
from devteam.settings.projects import ProjectsConfig
from devteam.storage import Store
from devteam.storage.types import utcnow

log = get_logger(__name__)

REMOTE_SCHEMES = ("git", "https", "ssh")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^:]")
_BRANCH = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/-]{1,255}$")
_ERROR_MAX = 2000


def check_git_url(url: str, *, allow_local: bool) -> str:
    """The URL when git may clone it under this policy; else `ValidationFailed` saying why."""
    url = url.strip()
    if not url or len(url) > 2048 or any(ord(c) < 32 for c in url):
        raise ValidationFailed("git_url: give a repository URL of at most 2048 characters")
    if url.startswith("-"):
        raise ValidationFailed("git_url: must not start with '-'")
    if "::" in url.split("/", 1)[0]:
        # `ext::cmd`, `fd::…`: remote helpers that run commands or read descriptors.
        raise ValidationFailed("git_url: remote helper transports (such as ext::) are refused")
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme in REMOTE_SCHEMES:
        if not urlsplit(url).hostname:
            raise ValidationFailed(f"git_url: {scheme}:// needs a host")
        return url
    if scheme == "file" or (not scheme and (url.startswith(("/", "./", "../", "~")))):
        if not allow_local:
            raise ValidationFailed(
                "git_url: local repositories are refused (set projects.allow_local: true)"
            )
        return url
    if not scheme and _SCP_LIKE.match(url):
        return url  # user@host:path, ssh's short form
    raise ValidationFailed("git_url: use a git://, https:// or ssh:// URL")


SSH_COMMAND = "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new"
"""Clones and fetches over ssh never prompt; a host seen for the first time is recorded."""


def _protocols(allow_local: bool) -> list[str]:
    return [*REMOTE_SCHEMES, *(["file"] if allow_local else [])]


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " ".join(lines[-3:])[:_ERROR_MAX] or "git failed without a message"


class Projects:
    """Adds, lists, refreshes and removes projects; clones run as background tasks."""

    def __init__(self, store: Store, root: Path, config: ProjectsConfig) -> None:
        self.store = store
        self.root = root
        self.config = config
        self._jobs: dict[str, asyncio.Task[None]] = {}

    def path(self, name: str) -> Path:
        return self.root / name

    async def close(self) -> None:
        """Stop clones still running (their projects stay `cloning` until added again)."""
        jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)

    async def wait(self, name: str) -> None:
        """Until the clone of `name` that this process runs has ended (tests, the CLI)."""
        if (job := self._jobs.get(name)) is not None:
            await asyncio.shield(job)

    # -- the API's operations ------------------------------------------------------------

    async def add(
        self,
        name: str,
        git_url: str,
        default_branch: str | None,
        *,
        actor: User,
        auditor: Auditor,
    ) -> Project:
        url = check_git_url(git_url, allow_local=self.config.allow_local)
        if default_branch is not None and not _BRANCH.match(default_branch):
            raise ValidationFailed("default_branch: not a branch name")
        if self.path(name).exists():
            raise Conflict(f"project {name!r} already exists in the workspaces folder")
        async with self.store.transaction() as tx:
            project = await tx.projects.create(name, url, default_branch, actor.id)
            await auditor.record(
                AuditAction.PROJECT_ADD,
                AuditOutcome.SUCCESS,
                actor=actor,
                resource_type="project",
                resource_id=name,
                details={"git_url": url},
                tx=tx,
            )
        self._start(name, self._clone(project))
        return project

    async def list(self) -> builtins.list[ProjectView]:
        async with self.store.read() as tx:
            stored = await tx.projects.list()
        views = [await self._view(p) for p in stored]
        known = {p.name for p in stored}
        views += [
            await self._unmanaged(path)
            for path in await asyncio.to_thread(self._hand_placed, known)
        ]
        return sorted(views, key=lambda v: v.name)

    async def get(self, name: str) -> ProjectView:
        async with self.store.read() as tx:
            project = await tx.projects.get(name)
        if project is not None:
            return await self._view(project)
        path = self.path(name)
        if (path / ".git").exists():
            return await self._unmanaged(path)
        raise NotFound(f"project {name} not found")

    async def refresh(self, name: str, *, actor: User, auditor: Auditor) -> ProjectView:
        """Fetch the remote and move the checkout to its branch (fast-forward only)."""
        project = await self._stored(name)
        if project.state != ProjectState.READY:
            raise Conflict(f"project {name} is {project.state}: only a ready project refreshes")
        error: str | None = None
        try:
            await self._fetch(project)
        except GitError as exc:
            error = f"refresh failed: {_tail(exc.stderr)}"
        except TimeoutError:
            error = f"refresh failed: no answer within {self.config.clone_timeout_s:g} s"
        async with self.store.transaction() as tx:
            updated = await tx.projects.update(
                name, error=error, **({"refreshed_at": utcnow()} if error is None else {})
            )
            await auditor.record(
                AuditAction.PROJECT_REFRESH,
                AuditOutcome.SUCCESS if error is None else AuditOutcome.FAILURE,
                actor=actor,
                resource_type="project",
                resource_id=name,
                tx=tx,
            )
        assert updated is not None
        return await self._view(updated)

    async def remove(self, name: str, *, actor: User, auditor: Auditor) -> None:
        """Forget the project and delete its clone; refused while tasks of it run."""
        await self._stored(name)
        running = 0
        async with self.store.transaction() as tx:
            if not (running := await tx.projects.unfinished_tasks(name)):
                await tx.projects.delete(name)
                await auditor.record(
                    AuditAction.PROJECT_REMOVE,
                    AuditOutcome.SUCCESS,
                    actor=actor,
                    resource_type="project",
                    resource_id=name,
                    tx=tx,
                )
        if running:
            await auditor.record(
                AuditAction.PROJECT_REMOVE,
                AuditOutcome.FAILURE,
                actor=actor,
                resource_type="project",
                resource_id=name,
                details={"unfinished_tasks": running},
            )
            raise Conflict(f"project {name} has {running} unfinished tasks: cancel them first")
        if (job := self._jobs.get(name)) is not None:
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job
        await asyncio.to_thread(shutil.rmtree, self.path(name), True)

    # -- git ----------------------------------------------------------------------------

    def _start(self, name: str, work: Any) -> None:
        job = asyncio.create_task(work, name=f"project-clone-{name}")
        self._jobs[name] = job
        job.add_done_callback(
            lambda done: self._jobs.pop(name, None) if self._jobs.get(name) is done else None
        )

    async def _clone(self, project: Project) -> None:
        name = project.name
        staging = self.root / f".{name}.cloning-{uuid.uuid4().hex[:8]}"
        error: str | None = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            branch = ("--branch", project.default_branch) if project.default_branch else ()
            async with asyncio.timeout(self.config.clone_timeout_s):
                await clone(
                    project.git_url,
                    staging,
                    *branch,
                    protocols=_protocols(self.config.allow_local),
                    ssh_command=SSH_COMMAND,
                )
            destination = self.path(name)
            if destination.exists():
                raise FileExistsError(f"{destination} appeared while cloning")
            staging.rename(destination)
        except GitError as exc:
            error = f"clone failed: {_tail(exc.stderr)}"
        except TimeoutError:
            error = f"clone failed: no answer within {self.config.clone_timeout_s:g} s"
        except OSError as exc:
            error = f"clone failed: {exc}"
        finally:
            if staging.exists():
                await asyncio.to_thread(shutil.rmtree, staging, True)
        async with self.store.transaction() as tx:
            if error is None:
                await tx.projects.update(
                    name, state=ProjectState.READY, error=None, refreshed_at=utcnow()
                )
            else:
                await tx.projects.update(name, state=ProjectState.FAILED, error=error)
        log.info(
            "project cloned" if error is None else "project clone failed", project=name, error=error
        )

    async def _fetch(self, project: Project) -> None:
        repo = Repository.checkout(self.path(project.name))
        async with asyncio.timeout(self.config.clone_timeout_s):
            await git(
                repo,
                "fetch",
                "--quiet",
                "--prune",
                "--no-recurse-submodules",
                "origin",
                protocols=_protocols(self.config.allow_local),
                ssh_command=SSH_COMMAND,
            )
            branch = (
                project.default_branch
                or (await git(repo, "rev-parse", "--abbrev-ref", "HEAD")).strip()
            )
            await git(repo, "merge", "--quiet", "--ff-only", f"origin/{branch}")

    async def _stored(self, name: str) -> Project:
        async with self.store.read() as tx:
            project = await tx.projects.get(name)
        if project is None:
            hint = (
                " (placed by hand: manage it on disk)"
                if (self.path(name) / ".git").exists()
                else ""
            )
            raise NotFound(f"project {name} not found{hint}")
        return project

    # -- views --------------------------------------------------------------------------

    def _hand_placed(self, known: set[str]) -> builtins.list[Path]:
        if not self.root.is_dir():
            return []
        return [
            path
            for path in self.root.iterdir()
            if path.name not in known
            and not path.name.startswith(".")
            and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", path.name)
            and (path / ".git").exists()
        ]

    async def _unmanaged(self, path: Path) -> ProjectView:
        url = (
            await git(
                Repository.checkout(path), "config", "--get", "remote.origin.url", check=False
            )
        ).strip()
        stat = path.stat()
        when = datetime.fromtimestamp(stat.st_mtime, UTC)
        return ProjectView(
            name=path.name,
            git_url=url or str(path),
            default_branch=None,
            state=ProjectState.READY,
            error=None,
            created_by=None,
            created_at=when,
            updated_at=when,
            refreshed_at=None,
            managed=False,
            last_commit=await self._last_commit(path),
            checks=await self._checks(path),
        )

    async def _view(self, project: Project) -> ProjectView:
        fields = project.model_dump()
        if project.state != ProjectState.READY:
            return ProjectView(**fields)
        path = self.path(project.name)
        return ProjectView(
            **fields, last_commit=await self._last_commit(path), checks=await self._checks(path)
        )

    async def _last_commit(self, path: Path) -> Commit | None:
        out = await git(
            Repository.checkout(path), "log", "-1", "--format=%H%x00%s%x00%an%x00%cI", check=False
        )
        parts = out.strip().split("\0")
        if len(parts) != 4:
            return None
        sha, subject, author, when = parts
        return Commit(
            sha=sha, subject=subject, author=author, committed_at=datetime.fromisoformat(when)
        )

    async def _checks(self, path: Path) -> Any:
        """The project's checks as the sandbox detects them, where that is installed."""
        try:
            module = importlib.import_module("devteam.sandbox.project")
        except ImportError:
            return None
        try:
            checks = await asyncio.to_thread(module.load_project_checks, path)
        except Exception as exc:
            log.warning("cannot detect the checks of a project", path=str(path), error=str(exc))
            return None
        dump = getattr(checks, "model_dump", None)
        return dump(mode="json") if callable(dump) else checks
