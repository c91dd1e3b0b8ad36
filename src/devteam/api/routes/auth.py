"""Log in, refresh, log out."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, ConfigDict, Field

from devteam.api.docs import error_responses
from devteam.api.security import AuditorDep, CurrentUser, SecurityDep
from devteam.domain.errors import ErrorCode
from devteam.security import TokenPair

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

_EXAMPLE_ACCESS = "eyJhbGciOiJIUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiIuLi4ifQ.c2lnbmF0dXJl"
_EXAMPLE_REFRESH = "eyJhbGciOiJIUzI1NiIsInR5cCI6InJlZnJlc2granSJ9.eyJzdWIiOiIuLi4ifQ.c2lnbmF0dXJl"


class TokenOut(BaseModel):
    model_config = ConfigDict(
        use_attribute_docstrings=True,
        json_schema_extra={
            "examples": [
                {
                    "access_token": _EXAMPLE_ACCESS,
                    "refresh_token": _EXAMPLE_REFRESH,
                    "token_type": "bearer",
                    "expires_in": 900,
                }
            ]
        },
    )

    access_token: str
    """Send as `Authorization: Bearer <access_token>`."""
    refresh_token: str
    """Use once with `POST /api/v1/auth/refresh`; the answer carries the next one."""
    token_type: Literal["bearer"] = "bearer"
    """Always `bearer`."""
    expires_in: int
    """Seconds until the access token expires."""

    @classmethod
    def of(cls, pair: TokenPair) -> TokenOut:
        return cls(
            access_token=pair.access_token,
            refresh_token=pair.refresh_token,
            expires_in=pair.expires_in,
        )


class RefreshIn(BaseModel):
    model_config = ConfigDict(
        use_attribute_docstrings=True,
        json_schema_extra={"examples": [{"refresh_token": _EXAMPLE_REFRESH}]},
    )

    refresh_token: Annotated[str, Field(min_length=1, max_length=4096)]
    """The refresh token of the latest pair."""


class PasswordForm(OAuth2PasswordRequestForm):
    """The OAuth2 password form of `POST /api/v1/auth/token`, each field documented."""

    def __init__(
        self,
        *,
        grant_type: Annotated[
            str | None, Form(description="`password` (OAuth2); may be left out.")
        ] = None,
        username: Annotated[str, Form(description="The user's login name.")],
        password: Annotated[
            str, Form(description="The user's password.", json_schema_extra={"format": "password"})
        ],
        scope: Annotated[str, Form(description="Not used; roles decide what a user may do.")] = "",
        client_id: Annotated[str | None, Form(description="Not used.")] = None,
        client_secret: Annotated[
            str | None, Form(description="Not used.", json_schema_extra={"format": "password"})
        ] = None,
    ) -> None:
        super().__init__(
            grant_type=grant_type,
            username=username,
            password=password,
            scope=scope,
            client_id=client_id,
            client_secret=client_secret,
        )


def _no_store(response: Response) -> None:
    # Token responses must not be cached (RFC 6749, section 5.1).
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"


@router.post(
    "/token",
    summary="Log in with a username and password",
    description=(
        "OAuth2 password form (`username`, `password`, form-encoded); this is what the "
        "**Authorize** button of the documentation uses. An unknown user and a wrong "
        "password get the same answer. Limited per client IP and per username."
    ),
    response_model=TokenOut,
    responses=error_responses(
        ErrorCode.INVALID_CREDENTIALS,
        ErrorCode.VALIDATION_ERROR,
        (ErrorCode.RATE_LIMITED, "too many requests: at most 10 per minute; retry in 31 s"),
    ),
)
async def login(
    form: Annotated[PasswordForm, Depends()],
    security: SecurityDep,
    auditor: AuditorDep,
    response: Response,
) -> TokenOut:
    pair = await security.sessions.login(form.username, form.password, auditor=auditor)
    _no_store(response)
    return TokenOut.of(pair)


@router.post(
    "/refresh",
    summary="Trade a refresh token for a new pair of tokens",
    description=(
        "Refresh tokens rotate: the one presented is used up and the answer carries the "
        "next one. Presenting a used refresh token again revokes its whole session "
        "(`token_reused`): log in again."
    ),
    response_model=TokenOut,
    responses=error_responses(
        (ErrorCode.UNAUTHORIZED, "invalid refresh token"),
        ErrorCode.TOKEN_EXPIRED,
        ErrorCode.TOKEN_REUSED,
        ErrorCode.VALIDATION_ERROR,
        ErrorCode.RATE_LIMITED,
    ),
)
async def refresh(
    body: RefreshIn, security: SecurityDep, auditor: AuditorDep, response: Response
) -> TokenOut:
    pair = await security.sessions.refresh(body.refresh_token, auditor=auditor)
    _no_store(response)
    return TokenOut.of(pair)


@router.post(
    "/logout",
    summary="End the caller's session",
    description=(
        "Revokes the refresh tokens of the session the access token belongs to; that "
        "access token, and every other of the session, stops working at once."
    ),
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(
        ErrorCode.UNAUTHORIZED, ErrorCode.TOKEN_EXPIRED, ErrorCode.RATE_LIMITED
    ),
)
async def logout(caller: CurrentUser, security: SecurityDep, auditor: AuditorDep) -> None:
    await security.sessions.logout(caller, auditor=auditor)
