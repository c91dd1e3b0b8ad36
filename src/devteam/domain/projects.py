"""Projects: git repositories the agents work on, cloned by the service or placed by hand."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

PROJECT_NAME = r"^[A-Za-z0-9_-]{1,64}$"
"""A project's name; the same rule as a task's `project_id`."""

ProjectName = Annotated[str, Field(pattern=PROJECT_NAME)]


class ProjectState(StrEnum):
    CLONING = "cloning"
    READY = "ready"
    FAILED = "failed"


class Commit(BaseModel):
    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    sha: str
    """The commit's full hash."""
    subject: str
    """The first line of its message."""
    author: str
    """Its author's name."""
    committed_at: datetime
    """When it was committed."""


class Project(BaseModel):
    """A project as stored."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    name: ProjectName
    """The project's name: tasks name it as `project_id`."""
    git_url: str
    """Where it is cloned from (`git://`, `https://`, `ssh://`)."""
    default_branch: str | None
    """The branch cloned and refreshed; None: the remote's default."""
    state: ProjectState
    """`cloning`, `ready` or `failed`."""
    error: str | None
    """Why the last clone or refresh failed."""
    created_by: UUID | None
    """Who added it (null for a repository placed by hand)."""
    created_at: datetime
    """When it was added."""
    updated_at: datetime
    """When its state last changed."""
    refreshed_at: datetime | None
    """When it was last cloned or fetched successfully."""


class ProjectView(Project):
    """A project with what its checkout tells now."""

    managed: bool = True
    """False for a repository placed in the workspaces folder by hand."""
    last_commit: Commit | None = None
    """The checked-out branch's newest commit."""
    checks: Any = None
    """The checks detected in the project (`.devteam.yaml` or its build files), when known."""
