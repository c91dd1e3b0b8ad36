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
    model_config = ConfigDict(frozen=True)

    sha: str
    subject: str
    author: str
    committed_at: datetime


class Project(BaseModel):
    """A project as stored."""

    model_config = ConfigDict(frozen=True)

    name: ProjectName
    git_url: str
    default_branch: str | None
    """The branch cloned and refreshed; None: the remote's default."""
    state: ProjectState
    error: str | None
    """Why the last clone or refresh failed."""
    created_by: UUID | None
    created_at: datetime
    updated_at: datetime
    refreshed_at: datetime | None


class ProjectView(Project):
    """A project with what its checkout tells now."""

    managed: bool = True
    """False for a repository placed in the workspaces folder by hand."""
    last_commit: Commit | None = None
    checks: Any = None
    """The checks detected in the project (`.devteam.yaml` or its build files), when known."""
