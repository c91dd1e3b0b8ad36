"""Tasks: submit, list, read, follow their events, cancel, approve their plan.

Object-level access: a task belongs to whoever submitted its root task. A task
the caller may not read is `404 not_found`, exactly as one that does not exist.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Header, Query, Request, Response, status
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from devteam.api.access import readable_task, task_and_root
from devteam.api.deps import ServicesDep, StoreDep
from devteam.api.direct import Arguments, direct_post
from devteam.api.docs import error_responses
from devteam.api.pagination import decode_cursor, encode_cursor
from devteam.api.security import (
    Acting,
    AuditorDep,
    CurrentUser,
    act_for,
    acting,
    oauth2_scheme,
)
from devteam.domain.audit import AuditOutcome, NewAuditEntry
from devteam.domain.enums import AgentType, Phase, TaskStatus
from devteam.domain.errors import Conflict, ErrorCode, Forbidden, NotFound, ValidationFailed
from devteam.domain.events import MAX_SEQ, Event
from devteam.domain.permissions import TASKS_APPROVE, TASKS_CANCEL, TASKS_READ, Permission
from devteam.domain.tasks import Budget, Task, TaskError, TaskRequest, TaskSummary, Usage
from devteam.orchestration.engine import Within
from devteam.security import AuditAction, Auditor, Principal, authorize_owned
from devteam.security.ratelimit import RateLimitScope
from devteam.storage import Store, UnitOfWork
from devteam.webhooks.addresses import check_webhook

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])

_ROOT_ID = "6f1c0b5e-3c9e-4a8e-9d7a-2f4b1e6c8a10"
_SUBTASK_ID = "a3d2e1f0-7b6c-4d5e-8f9a-0b1c2d3e4f50"
_USER_ID = "0b5f3c9e-6f1c-4a8e-9d7a-2f4b1e6c8a10"
_TASK_EXAMPLE: dict[str, Any] = {
    "id": _ROOT_ID,
    "parent_id": None,
    "root_id": _ROOT_ID,
    "key": None,
    "status": "in_progress",
    "agent_type": None,
    "task_type": "feature",
    "task": "Add a /healthz endpoint to the orders service with a test",
    "complexity": 6,
    "priority": 5,
    "project_id": "orders-service",
    "metadata": {"ticket": "OPS-42"},
    "phase": None,
    "depends_on": [],
    "require_approval": False,
    "budget": {"max_tokens": None, "max_cost_usd": None, "timeout_s": 14400.0},
    "attempt": 1,
    "created_by": _USER_ID,
    "created_at": "2025-01-31T09:30:00Z",
    "updated_at": "2025-01-31T09:30:04Z",
    "started_at": "2025-01-31T09:30:02Z",
    "finished_at": None,
    "result": None,
    "error": None,
    "usage": {
        "requests": 3,
        "input_tokens": 5120,
        "output_tokens": 830,
        "tool_calls": 4,
        "cost_usd": 0.021,
    },
    "subtasks": [
        {
            "id": _SUBTASK_ID,
            "key": "analysis",
            "task": "Map the modules that handle login and where the rate limits are applied",
            "status": "completed",
            "agent_type": "codebase_analyzer",
            "phase": "analysis",
            "complexity": 2,
            "attempt": 1,
            "depends_on": [],
            "error": None,
            "usage": {
                "requests": 1,
                "input_tokens": 2048,
                "output_tokens": 300,
                "tool_calls": 4,
                "cost_usd": 0.008,
            },
            "started_at": "2025-01-31T09:30:02Z",
            "finished_at": "2025-01-31T09:30:03Z",
        }
    ],
}


class TaskOut(BaseModel):
    """A task: a root task as submitted, or one of its subtasks."""

    model_config = ConfigDict(
        use_attribute_docstrings=True, json_schema_extra={"examples": [_TASK_EXAMPLE]}
    )

    id: UUID
    """The task's id."""
    parent_id: UUID | None
    """None for a root task."""
    root_id: UUID
    """The root task: the task itself for a root task."""
    key: str | None
    """The subtask's key in its plan; None for a root task."""
    status: TaskStatus
    """Where the task is in its lifecycle."""
    agent_type: AgentType | None
    """The agent that works on it; null while the TeamLeader has not decided."""
    task_type: str
    """The kind of work (`feature`, `bugfix`, `research`, ...), used for routing."""
    task: str
    """What to do, in words."""
    complexity: int
    """1 to 10, as submitted or planned."""
    priority: int
    """1 to 10; higher runs first."""
    project_id: str | None
    """The project (a git repository) the task works on, if any."""
    metadata: dict[str, Any]
    """Free-form data given at submission."""
    phase: Phase | None
    """The subtask's phase: research, analysis, implementation or review."""
    depends_on: list[UUID]
    """Sibling subtasks this one waits for."""
    require_approval: bool
    """The plan waits for approval before it runs."""
    budget: Budget | None
    """Limits of tokens, cost and wall time for the whole task."""
    attempt: int
    """1 for the first attempt; retries count up."""
    created_by: UUID
    """The user who submitted the root task."""
    created_at: datetime
    """When the task was created."""
    updated_at: datetime
    """When the task last changed."""
    started_at: datetime | None
    """When work on it first started."""
    finished_at: datetime | None
    """When it completed, failed or was cancelled."""
    result: dict[str, Any] | None
    """The agent's typed output (`TaskResult`) once completed."""
    error: TaskError | None
    """Why it failed or was cancelled; null otherwise."""
    usage: Usage
    """LLM requests, tokens, tool calls and cost, the subtasks' included."""
    subtasks: list[TaskSummary]
    """The task's subtasks, in creation order (empty until it is planned)."""

    @classmethod
    def of(cls, task: Task, subtasks: list[Task]) -> TaskOut:
        # The task's own values, validated when the task was made: taken as they are.
        fields = {name: getattr(task, name) for name in _TASK_OUT_FIELDS}
        return cls.model_construct(**fields, subtasks=[s.summary() for s in subtasks])


_TASK_OUT_FIELDS = tuple(name for name in TaskOut.model_fields if name != "subtasks")


class TaskPage(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    items: list[TaskOut]
    """Root tasks, newest first."""
    next_cursor: str | None
    """Pass as `cursor` for the next (older) page; null on the last page."""


_EVENT_EXAMPLE: dict[str, Any] = {
    "id": "9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b",
    "task_id": _ROOT_ID,
    "subtask_id": _SUBTASK_ID,
    "seq": 7,
    "type": "tool.call",
    "data": {"key": "analysis", "server": "workspace", "tool": "read_file", "outcome": "ok"},
    "ts": "2025-01-31T09:30:02.512Z",
}


class EventPage(BaseModel):
    model_config = ConfigDict(
        use_attribute_docstrings=True,
        json_schema_extra={"examples": [{"items": [_EVENT_EXAMPLE], "next_after": None}]},
    )

    items: list[Event]
    """In `seq` order."""
    next_after: int | None
    """Pass as `after` for the next page; null when this page reached the last event so
    far (a task still running has more later: poll with the last `seq` you have)."""


class ApprovalIn(BaseModel):
    model_config = ConfigDict(
        use_attribute_docstrings=True,
        extra="forbid",
        json_schema_extra={"examples": [{"approved": True, "comment": "go ahead"}]},
    )

    approved: StrictBool
    """True runs the plan; false cancels the task."""
    comment: Annotated[str, Field(max_length=2000)] | None = None
    """Why, for the history (at most 2000 characters)."""


_NOT_FOUND = (ErrorCode.NOT_FOUND, f"task {_ROOT_ID} not found")
_READ_ERRORS = (ErrorCode.UNAUTHORIZED, ErrorCode.TOKEN_EXPIRED, ErrorCode.RATE_LIMITED)


async def _readable(store: Store, caller: Principal, task_id: UUID) -> tuple[Task, list[Task]]:
    """The task and its subtasks, or 404 when it does not exist or the caller may not read it."""
    async with store.read() as tx:
        task, _ = await readable_task(tx, caller, task_id)
        return task, await tx.tasks.children(task.id)


async def _owner_of(store: Store, task_id: UUID) -> UUID:
    async with store.read() as tx:
        found = await task_and_root(tx, task_id)
    if found is None:
        raise NotFound(f"task {task_id} not found")
    return found[1].created_by


def _audit_in(auditor: Auditor, action: AuditAction, caller: Principal, **details: Any) -> Within:
    """A `within` hook recording a successful action in the action's transaction."""

    async def record(tx: UnitOfWork, task: Task) -> None:
        await auditor.record(
            action,
            AuditOutcome.SUCCESS,
            actor=caller,
            resource_type="task",
            resource_id=task.id,
            details={"status": task.status.value, **details},
            tx=tx,
        )

    return record


@asynccontextmanager
async def _audit_refusals(
    auditor: Auditor, action: AuditAction, caller: Principal, task_id: UUID | None
) -> AsyncIterator[None]:
    """Record a refused action (conflict, forbidden) in the audit log, then re-raise."""
    try:
        yield
    except (Conflict, Forbidden) as exc:
        outcome = AuditOutcome.DENIED if isinstance(exc, Forbidden) else AuditOutcome.FAILURE
        await auditor.record(
            action,
            outcome,
            actor=caller,
            resource_type="task",
            resource_id=task_id,
            details={"reason": exc.message},
        )
        raise


_SUBMITTING = acting(Permission.TASKS_CREATE)
_IDEMPOTENCY_KEY_MAX = 255


async def _submission(route: APIRoute, request: Request, response: Response) -> Arguments:
    """`submit_task`'s arguments for a usual submission: an `application/json` body (its
    parameters aside: the text's encoding is told from its bytes, as FastAPI does) that
    validates and an `Idempotency-Key`, if any, of a valid length (see `api/direct.py`);
    the checks of the caller are `acting`'s, in their order."""
    media_type, _, _ = request.headers.get("content-type", "").partition(";")
    if media_type.strip().lower() != "application/json":
        return None
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= _IDEMPOTENCY_KEY_MAX:
        return None
    try:
        document = json.loads(await request.body())
    except ValueError:
        return None
    assert route.body_field is not None
    body, errors = route.body_field.validate(document, {}, loc=("body",))
    if errors:
        return None
    token = await oauth2_scheme(request)
    # The body is valid: the submission limit is counted with the writes', in one go.
    acting_as = await act_for(
        request,
        response,
        token,
        Permission.TASKS_CREATE,
        counted_with=(RateLimitScope.TASK_SUBMIT,),
    )
    return {"body": body, "acting_as": acting_as, "response": response, "idempotency_key": key}


@direct_post(
    router,
    "",
    resolve=_submission,
    summary="Submit a task",
    description=(
        "Creates a root task and hands it to the TeamLeader, which plans, routes and "
        "delegates it; answers at once with `202` and the task. Follow it with "
        "`GET /api/v1/tasks/{id}/events` or the WebSocket `/api/v1/ws`.\n\n"
        "With an `Idempotency-Key` header, the same key and body from the same user "
        "within 24 hours return the original task with `200` instead of creating "
        "another; the same key with another body is `409`."
    ),
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskOut,
    responses={
        200: {"model": TaskOut, "description": "A replay: the task this Idempotency-Key made"},
        **error_responses(
            ErrorCode.UNAUTHORIZED,
            ErrorCode.TOKEN_EXPIRED,
            (ErrorCode.FORBIDDEN, "this needs the tasks:create permission"),
            (
                ErrorCode.CONFLICT,
                "this Idempotency-Key was used with a different request body",
            ),
            (ErrorCode.VALIDATION_ERROR, "complexity: Input should be less than or equal to 10"),
            ErrorCode.PAYLOAD_TOO_LARGE,
            ErrorCode.RATE_LIMITED,
        ),
    },
)
async def submit_task(
    body: TaskRequest,
    acting_as: Annotated[Acting, _SUBMITTING],
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=_IDEMPOTENCY_KEY_MAX,
            description="Any unique string (e.g. a UUID) naming this submission.",
        ),
    ] = None,
) -> TaskOut:
    caller, services, auditor = acting_as.caller, acting_as.services, acting_as.auditor
    security = acting_as.security
    # Submissions have their own budget on top of the writes': each one starts work.
    if RateLimitScope.TASK_SUBMIT not in acting_as.counted:
        state = await security.rate_limiter.hit(RateLimitScope.TASK_SUBMIT, str(caller.id))
        if state is not None and state.remaining < int(
            response.headers.get("RateLimit-Remaining", state.remaining + 1)
        ):
            response.headers.update(state.headers())
    if body.webhook is not None:
        await check_webhook(body.webhook, services.settings)
    details = {"agent_type": body.agent_type, "complexity": body.complexity}
    entries: list[NewAuditEntry] = []

    def audit(task: Task) -> NewAuditEntry:
        entries.append(
            auditor.entry(
                AuditAction.TASK_SUBMIT,
                AuditOutcome.SUCCESS,
                actor=caller,
                resource_type="task",
                resource_id=task.id,
                details={"status": task.status.value, **details},
            )
        )
        return entries[-1]

    async with _audit_refusals(auditor, AuditAction.TASK_SUBMIT, caller, None):
        submission = await services.team_leader.submit(body, caller, idempotency_key, audit=audit)
    if submission.created:
        for entry in entries:
            auditor.log_entry(entry)
    if not submission.created:
        response.status_code = status.HTTP_200_OK
        return TaskOut.of(*await _readable(services.store, caller, submission.task.id))
    return TaskOut.of(submission.task, [])


@router.get(
    "",
    summary="List root tasks",
    description=(
        "The root tasks the caller may read (their own; every user's for operators and "
        "admins), newest first, each with its subtask summaries. Filter by `status`, "
        "`project_id` and `agent_type`; page with `cursor`."
    ),
    response_model=TaskPage,
    responses=error_responses(
        *_READ_ERRORS,
        (ErrorCode.FORBIDDEN, "this needs the tasks:read:own or tasks:read:any permission"),
        (ErrorCode.VALIDATION_ERROR, "cursor: not a cursor from a previous page"),
    ),
)
async def list_tasks(
    caller: CurrentUser,
    store: StoreDep,
    status_: Annotated[TaskStatus | None, Query(alias="status")] = None,
    project_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = None,
    agent_type: AgentType | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> TaskPage:
    owner = caller.owner_filter(TASKS_READ)
    before = _decode_task_cursor(cursor) if cursor else None
    async with store.read() as tx:
        roots = await tx.tasks.list_roots(
            owner=owner,
            status=status_.value if status_ else None,
            project_id=project_id,
            agent_type=agent_type.value if agent_type else None,
            before=before,
            limit=limit + 1,
        )
        page = roots[:limit]
        children = await tx.tasks.children_of([t.id for t in page])
    more = len(roots) > limit
    last = page[-1] if page else None
    return TaskPage(
        items=[TaskOut.of(t, children.get(t.id, [])) for t in page],
        next_cursor=(
            encode_cursor({"created_at": last.created_at.isoformat(), "id": str(last.id)})
            if more and last is not None
            else None
        ),
    )


def _decode_task_cursor(cursor: str) -> tuple[datetime, UUID]:
    position = decode_cursor(cursor, {"created_at": str, "id": str})
    try:
        created_at = datetime.fromisoformat(position["created_at"])
        if created_at.tzinfo is None:
            raise ValueError("a cursor's time carries its UTC offset")
        return created_at.astimezone(UTC), UUID(position["id"])
    except (ValueError, OverflowError):
        raise ValidationFailed(
            "cursor: not a cursor from a previous page",
            details=[
                {
                    "loc": ["query", "cursor"],
                    "field": "cursor",
                    "message": "not a cursor from a previous page",
                    "type": "value_error",
                }
            ],
        ) from None


@router.get(
    "/{task_id}",
    summary="Read a task, with its subtasks and result",
    description="Any task: a root task or a subtask (which belongs to its root's owner).",
    response_model=TaskOut,
    responses=error_responses(*_READ_ERRORS, _NOT_FOUND, ErrorCode.VALIDATION_ERROR),
)
async def read_task(task_id: UUID, caller: CurrentUser, store: StoreDep) -> TaskOut:
    return TaskOut.of(*await _readable(store, caller, task_id))


@router.get(
    "/{task_id}/events",
    summary="Read a task's events",
    description=(
        "Events with `seq` greater than `after`, in order, at most `limit`. For a root "
        "task: every event of the task and its subtasks, numbered 1..N without gaps. For "
        "a subtask: only the events about that subtask (still numbered in its root "
        "task's sequence, so the numbers have gaps)."
    ),
    response_model=EventPage,
    responses=error_responses(*_READ_ERRORS, _NOT_FOUND, ErrorCode.VALIDATION_ERROR),
)
async def read_events(
    task_id: UUID,
    caller: CurrentUser,
    store: StoreDep,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> EventPage:
    async with store.read() as tx:
        found = await task_and_root(tx, task_id)
        if found is None:
            raise NotFound(f"task {task_id} not found")
        task, root = found
        authorize_owned(caller, root.created_by, TASKS_READ, resource=f"task {task_id}")
        subtask = task.id if task.parent_id is not None else None
        events = await tx.events.list_after(root.id, after, limit, subtask_id=subtask)
    return EventPage(items=events, next_after=events[-1].seq if len(events) == limit else None)


@router.post(
    "/{task_id}/cancel",
    summary="Cancel a task",
    description=(
        "Cancels a root task and everything under it: running agents are stopped, then "
        "the task ends `cancelled`. Answers `202` with the task (`cancelling`, or "
        "`cancelled` when nothing was running). A finished task, or a subtask, is `409`."
    ),
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskOut,
    responses=error_responses(
        *_READ_ERRORS,
        (ErrorCode.FORBIDDEN, "this needs the tasks:cancel:own or tasks:cancel:any permission"),
        _NOT_FOUND,
        (ErrorCode.CONFLICT, "the task is already completed"),
        ErrorCode.VALIDATION_ERROR,
    ),
)
async def cancel_task(
    task_id: UUID, caller: CurrentUser, services: ServicesDep, auditor: AuditorDep
) -> TaskOut:
    async with _audit_refusals(auditor, AuditAction.TASK_CANCEL, caller, task_id):
        owner = await _owner_of(services.store, task_id)
        authorize_owned(caller, owner, TASKS_CANCEL, resource=f"task {task_id}", read=TASKS_READ)
        await services.team_leader.cancel(
            task_id,
            f"cancelled by {caller.username}",
            within=_audit_in(auditor, AuditAction.TASK_CANCEL, caller),
        )
    return TaskOut.of(*await _readable(services.store, caller, task_id))


@router.post(
    "/{task_id}/approve",
    summary="Approve or reject a task's plan",
    description=(
        "For a task `awaiting_approval`: `approved: true` runs the plan, `false` cancels "
        "the task. Any other status is `409`."
    ),
    response_model=TaskOut,
    responses=error_responses(
        *_READ_ERRORS,
        (
            ErrorCode.FORBIDDEN,
            "this needs the tasks:approve:own or tasks:approve:any permission",
        ),
        _NOT_FOUND,
        (ErrorCode.CONFLICT, "the task is in_progress, not awaiting approval"),
        (ErrorCode.VALIDATION_ERROR, "approved: Field required"),
    ),
)
async def approve_task(
    task_id: UUID,
    body: Annotated[ApprovalIn, Body()],
    caller: CurrentUser,
    services: ServicesDep,
    auditor: AuditorDep,
) -> TaskOut:
    async with _audit_refusals(auditor, AuditAction.TASK_APPROVE, caller, task_id):
        owner = await _owner_of(services.store, task_id)
        authorize_owned(caller, owner, TASKS_APPROVE, resource=f"task {task_id}", read=TASKS_READ)
        await services.team_leader.approve(
            task_id,
            body.approved,
            body.comment,
            caller,
            within=_audit_in(auditor, AuditAction.TASK_APPROVE, caller, approved=body.approved),
        )
    return TaskOut.of(*await _readable(services.store, caller, task_id))
