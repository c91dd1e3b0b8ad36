"""Projects: git repositories cloned into the workspaces folder for the agents to work on."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from devteam.agents.projects import Projects
from devteam.api.docs import error_responses
from devteam.api.security import AuditorDep, require
from devteam.domain.errors import ErrorCode
from devteam.domain.permissions import Permission
from devteam.domain.projects import PROJECT_NAME, ProjectName, ProjectView
from devteam.security import Principal

router = APIRouter(prefix="/api/v1/projects", tags=["projects"])


async def get_projects(request: Request) -> Projects:
    projects: Projects = request.app.state.projects
    return projects


ProjectsDep = Annotated[Projects, Depends(get_projects)]
NamePath = Annotated[str, Path(pattern=PROJECT_NAME)]
Manager = Annotated[Principal, require(Permission.PROJECTS_MANAGE)]
Reader = Annotated[Principal, require(Permission.PROJECTS_READ)]


class ProjectIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        use_attribute_docstrings=True,
        json_schema_extra={
            "examples": [
                {"name": "shop", "git_url": "https://git.example.com/shop.git",
                 "default_branch": "main"}
            ]
        },
    )  # fmt: skip

    name: ProjectName
    """The project's name, used as `project_id` by tasks."""
    git_url: Annotated[str, Field(min_length=1, max_length=2048)]
    """`git://`, `https://` or `ssh://` (local paths only with `projects.allow_local`)."""
    default_branch: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    """The branch to clone and refresh; default: the remote's default branch."""


_PROJECT_EXAMPLE: dict[str, Any] = {
    "name": "shop",
    "git_url": "https://git.example.com/shop.git",
    "default_branch": "main",
    "state": "ready",
    "error": None,
    "created_by": "0b5f3c9e-6f1c-4a8e-9d7a-2f4b1e6c8a10",
    "created_at": "2025-01-31T09:30:00Z",
    "updated_at": "2025-01-31T09:30:04Z",
    "refreshed_at": "2025-01-31T09:30:04Z",
    "managed": True,
    "last_commit": {
        "sha": "4f2a9c1e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a39",
        "subject": "Add the health endpoint",
        "author": "Ada",
        "committed_at": "2025-01-30T17:02:11Z",
    },
    "checks": None,
}


class ProjectOut(ProjectView):
    """A project: its state (`cloning`, `ready`, `failed`), last commit and checks."""

    model_config = ConfigDict(
        use_attribute_docstrings=True, json_schema_extra={"examples": [_PROJECT_EXAMPLE]}
    )


class ProjectPage(BaseModel):
    model_config = ConfigDict(
        use_attribute_docstrings=True,
        json_schema_extra={"examples": [{"items": [_PROJECT_EXAMPLE]}]},
    )

    items: list[ProjectOut]
    """Every project, by name: cloned ones and repositories placed by hand."""


_ERRORS = (ErrorCode.UNAUTHORIZED, ErrorCode.TOKEN_EXPIRED, ErrorCode.RATE_LIMITED)
_NOT_FOUND = (ErrorCode.NOT_FOUND, "project shop not found")
_BAD_NAME = (ErrorCode.VALIDATION_ERROR, "name: should match pattern '^[A-Za-z0-9_-]{1,64}$'")


@router.post(
    "",
    summary="Add a project: clone its repository (in the background)",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ProjectOut,
    responses=error_responses(
        *_ERRORS,
        (ErrorCode.FORBIDDEN, "this needs the projects:manage permission"),
        (ErrorCode.CONFLICT, "project 'shop' already exists"),
        (ErrorCode.VALIDATION_ERROR, "git_url: use a git://, https:// or ssh:// URL"),
    ),
)
async def add_project(
    body: ProjectIn, caller: Manager, projects: ProjectsDep, auditor: AuditorDep
) -> ProjectOut:
    project = await projects.add(
        body.name, body.git_url, body.default_branch, actor=caller, auditor=auditor
    )
    return ProjectOut(**project.model_dump())


@router.get(
    "",
    summary="List projects",
    response_model=ProjectPage,
    responses=error_responses(*_ERRORS, ErrorCode.FORBIDDEN),
)
async def list_projects(_: Reader, projects: ProjectsDep) -> ProjectPage:
    return ProjectPage(items=[ProjectOut(**p.model_dump()) for p in await projects.list()])


@router.get(
    "/{name}",
    summary="One project: its state, last commit and detected checks",
    response_model=ProjectOut,
    responses=error_responses(*_ERRORS, ErrorCode.FORBIDDEN, _NOT_FOUND, _BAD_NAME),
)
async def read_project(name: NamePath, _: Reader, projects: ProjectsDep) -> ProjectOut:
    return ProjectOut(**(await projects.get(name)).model_dump())


@router.post(
    "/{name}/refresh",
    summary="Fetch the project's remote and fast-forward its checkout",
    description="A failed fetch keeps the checkout as it was and sets `error`.",
    response_model=ProjectOut,
    responses=error_responses(
        *_ERRORS,
        (ErrorCode.FORBIDDEN, "this needs the projects:manage permission"),
        _NOT_FOUND,
        _BAD_NAME,
        (ErrorCode.CONFLICT, "project shop is cloning: only a ready project refreshes"),
    ),
)
async def refresh_project(
    name: NamePath, caller: Manager, projects: ProjectsDep, auditor: AuditorDep
) -> ProjectOut:
    view = await projects.refresh(name, actor=caller, auditor=auditor)
    return ProjectOut(**view.model_dump())


@router.delete(
    "/{name}",
    summary="Remove a project and its clone",
    description="Refused with 409 while tasks of the project have not finished.",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(
        *_ERRORS,
        (ErrorCode.FORBIDDEN, "this needs the projects:manage permission"),
        _NOT_FOUND,
        _BAD_NAME,
        (ErrorCode.CONFLICT, "project shop has 2 unfinished tasks: cancel them first"),
    ),
)
async def remove_project(
    name: NamePath, caller: Manager, projects: ProjectsDep, auditor: AuditorDep
) -> Response:
    await projects.remove(name, actor=caller, auditor=auditor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
