"""Users: the caller's own account, and account management for admins."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, status
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from starlette.convertors import Convertor, register_url_convertor

from devteam.api.docs import error_responses
from devteam.api.pagination import decode_cursor, encode_cursor
from devteam.api.security import AuditorDep, CurrentUser, SecurityDep, require
from devteam.domain.enums import Role
from devteam.domain.errors import ErrorCode
from devteam.domain.permissions import USERS_READ, Permission
from devteam.domain.users import User
from devteam.security import Principal, authorize_owned

router = APIRouter(prefix="/api/v1/users", tags=["users"])


class NotMe(Convertor[str]):
    """Any path segment but `me`: `/users/me` is the caller's own account, so `PATCH
    /users/me` is a 405 (with `Allow: GET`), not a malformed `/users/{user_id}`."""

    regex = "(?!me$)[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("not_me", NotMe())

_USER_EXAMPLE: dict[str, Any] = {
    "id": "0b5f3c9e-6f1c-4a8e-9d7a-2f4b1e6c8a10",
    "username": "ada",
    "role": "developer",
    "is_active": True,
    "created_at": "2025-01-31T09:30:00Z",
}


class UserOut(BaseModel):
    model_config = ConfigDict(
        use_attribute_docstrings=True, json_schema_extra={"examples": [_USER_EXAMPLE]}
    )

    id: UUID
    """The user's id."""
    username: str
    """The login name."""
    role: Role
    """`admin`, `operator`, `developer` or `viewer`."""
    is_active: bool
    """False once an admin deactivated the account: it can no longer log in."""
    created_at: datetime
    """When the user was created."""

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls.model_validate(user.model_dump(include=set(cls.model_fields)))


class UserPage(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    items: list[UserOut]
    """Users, in username order."""
    next_cursor: str | None
    """Pass as `cursor` for the next page; null on the last page."""


class UserCreate(BaseModel):
    model_config = ConfigDict(
        use_attribute_docstrings=True,
        json_schema_extra={
            "examples": [
                {"username": "ada", "password": "correct horse battery", "role": "developer"}
            ]
        },
    )

    username: Annotated[str, Field(min_length=3, max_length=64)]
    """3-64 letters, digits, `.`, `_` or `-`; stored in lower case."""
    password: SecretStr
    """At least `passwords.min_length` characters (config/security.yaml; default 12)."""
    role: Role
    """`admin`, `operator`, `developer` or `viewer`."""


class UserUpdate(BaseModel):
    model_config = ConfigDict(
        use_attribute_docstrings=True,
        extra="forbid",
        # An empty body changes nothing: at least one field (the validator below).
        json_schema_extra={"examples": [{"role": "operator"}], "minProperties": 1},
    )

    # Leave a field out to keep it; null is not a value of either (nor in the schema).
    role: Role | SkipJsonSchema[None] = None
    """A new role; omitted: unchanged."""
    is_active: StrictBool | SkipJsonSchema[None] = None
    """False deactivates the account and ends its sessions."""

    @field_validator("role", "is_active", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("leave the field out instead of sending null")
        return value

    @model_validator(mode="after")
    def _something(self) -> UserUpdate:
        if self.role is None and self.is_active is None:
            raise ValueError("give role, is_active or both")
        return self


@router.get(
    "/me",
    summary="The caller's own account",
    response_model=UserOut,
    responses=error_responses(
        ErrorCode.UNAUTHORIZED, ErrorCode.TOKEN_EXPIRED, ErrorCode.RATE_LIMITED
    ),
)
async def read_me(caller: CurrentUser) -> UserOut:
    return UserOut.of(caller)


@router.get(
    "",
    summary="List users (admin)",
    description="In username order, `limit` per page.",
    response_model=UserPage,
    responses=error_responses(
        ErrorCode.UNAUTHORIZED,
        (ErrorCode.FORBIDDEN, "this needs the users:read:any permission"),
        ErrorCode.VALIDATION_ERROR,
        ErrorCode.RATE_LIMITED,
    ),
    dependencies=[require(Permission.USERS_READ_ANY)],
)
async def list_users(
    security: SecurityDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> UserPage:
    after = decode_cursor(cursor, {"after": str})["after"] if cursor else None
    users = await security.accounts.list(limit=limit + 1, after_username=after)
    page = users[:limit]
    more = len(users) > limit
    return UserPage(
        items=[UserOut.of(u) for u in page],
        next_cursor=encode_cursor({"after": page[-1].username}) if more else None,
    )


@router.post(
    "",
    summary="Create a user (admin)",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses=error_responses(
        ErrorCode.UNAUTHORIZED,
        (ErrorCode.FORBIDDEN, "this needs the users:manage permission"),
        (ErrorCode.CONFLICT, "user 'ada' already exists"),
        (ErrorCode.VALIDATION_ERROR, "password: at least 12 characters"),
        ErrorCode.RATE_LIMITED,
    ),
)
async def create_user(
    body: UserCreate,
    caller: Annotated[Principal, require(Permission.USERS_MANAGE)],
    security: SecurityDep,
    auditor: AuditorDep,
) -> UserOut:
    user = await security.accounts.create(
        body.username,
        body.password.get_secret_value(),
        body.role,
        auditor=auditor,
        actor=caller,
    )
    return UserOut.of(user)


@router.get(
    "/{user_id:not_me}",
    summary="One user",
    description="Any user for an admin; otherwise only the caller's own account.",
    response_model=UserOut,
    responses=error_responses(
        ErrorCode.UNAUTHORIZED,
        (ErrorCode.NOT_FOUND, "user 0b5f3c9e-6f1c-4a8e-9d7a-2f4b1e6c8a10 not found"),
        ErrorCode.VALIDATION_ERROR,
        ErrorCode.RATE_LIMITED,
    ),
)
async def read_user(user_id: UUID, caller: CurrentUser, security: SecurityDep) -> UserOut:
    # The same 404 for a user that does not exist and one the caller may not see.
    user = await security.accounts.get(user_id)
    authorize_owned(caller, user.id, USERS_READ, resource=f"user {user_id}")
    return UserOut.of(user)


@router.patch(
    "/{user_id:not_me}",
    summary="Change a user's role or deactivate them (admin)",
    description=(
        "Role changes apply to the user's next request. Deactivating ends the user's "
        "sessions. The last active admin cannot be demoted or deactivated."
    ),
    response_model=UserOut,
    responses=error_responses(
        ErrorCode.UNAUTHORIZED,
        (ErrorCode.FORBIDDEN, "this needs the users:manage permission"),
        (ErrorCode.NOT_FOUND, "user 0b5f3c9e-6f1c-4a8e-9d7a-2f4b1e6c8a10 not found"),
        (ErrorCode.CONFLICT, "the last active admin cannot be demoted or deactivated"),
        ErrorCode.VALIDATION_ERROR,
        ErrorCode.RATE_LIMITED,
    ),
)
async def update_user(
    user_id: UUID,
    body: UserUpdate,
    caller: Annotated[Principal, require(Permission.USERS_MANAGE)],
    security: SecurityDep,
    auditor: AuditorDep,
) -> UserOut:
    user = await security.accounts.update(
        user_id, role=body.role, is_active=body.is_active, auditor=auditor, actor=caller
    )
    return UserOut.of(user)
