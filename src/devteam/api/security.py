"""Authentication and authorization dependencies for routes (and the WebSocket hub).

```python
@router.get("/{task_id}")
async def read_task(task_id: UUID, user: CurrentUser, store: StoreDep) -> TaskOut:
    task = ...  # None when missing
    if task is None:
        raise NotFound(f"task {task_id} not found")
    authorize_owned(user, task.created_by, TASKS_READ, resource=f"task {task_id}")

@router.get("/rules", dependencies=[require(Permission.RULES_READ)])
async def rules() -> ...: ...
```

`CurrentUser` checks the bearer token, the session and the user, and counts the
request in the caller's read (GET, HEAD) or write (any other method) rate limit (the
`RateLimit-*` headers go on the answer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response, WebSocket
from fastapi.params import Depends as DependsParam
from fastapi.security import OAuth2PasswordBearer

from devteam.api.deps import ServicesDep
from devteam.domain.errors import Forbidden, ServiceUnavailable, Unauthorized
from devteam.domain.permissions import Permission
from devteam.security import Auditor, Origin, Principal, Security
from devteam.security.ratelimit import RateLimitScope
from devteam.services import Services

TOKEN_URL = "/api/v1/auth/token"

oauth2_scheme = OAuth2PasswordBearer(
    tokenUrl=TOKEN_URL,
    scheme_name="OAuth2",
    description="Log in with a username and password; send `Authorization: Bearer <token>`.",
    auto_error=False,
)


async def get_security(services: ServicesDep) -> Security:
    if services.security is None:
        raise ServiceUnavailable("this process serves no API")
    return services.security


SecurityDep = Annotated[Security, Depends(get_security)]


def request_origin(request: Request) -> Origin:
    """Client IP and request id of the request (set by the edge middleware)."""
    return Origin(
        client_ip=request.client.host[:64] if request.client else None,
        request_id=getattr(request.state, "request_id", None),
    )


async def get_auditor(security: SecurityDep, request: Request) -> Auditor:
    return security.auditor.bind(request_origin(request))


AuditorDep = Annotated[Auditor, Depends(get_auditor)]
"""An `Auditor` stamping entries with this request's client IP and request id."""


READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_current_user(
    security: SecurityDep,
    request: Request,
    response: Response,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> Principal:
    return await _authenticated(security, request, response, token)


async def _authenticated(
    security: Security, request: Request, response: Response, token: str | None
) -> Principal:
    """The caller of `token`, counted in their read or write rate limit."""
    caller = await _caller(security, request, token)
    await _count(security, request, response, caller)
    return caller


async def _caller(security: Security, request: Request, token: str | None) -> Principal:
    if not token:
        raise Unauthorized("authentication required: send Authorization: Bearer <token>")
    return await security.authenticate(token, auditor=_sign_in_auditor(security, request))


async def _count(
    security: Security,
    request: Request,
    response: Response,
    caller: Principal,
    also: Sequence[RateLimitScope] = (),
) -> None:
    """Count the request in the caller's read or write limit, then in `also`, in one
    request to the storage; the tightest state's `RateLimit-*` headers go on `response`."""
    scope = RateLimitScope.READ if request.method in READ_METHODS else RateLimitScope.WRITE
    limiter = security.rate_limiter
    key = str(caller.id)
    state = await (limiter.hit_in_turn((scope, *also), key) if also else limiter.hit(scope, key))
    if state is not None:
        response.headers.update(state.headers())


def _sign_in_auditor(security: Security, request: Request) -> Auditor | None:
    """An auditor for single sign-on's sign-ins, with the request's origin (None without SSO)."""
    return security.auditor.bind(request_origin(request)) if security.oidc is not None else None


CurrentUser = Annotated[Principal, Depends(get_current_user)]
"""The authenticated caller (401 without a valid access token; 429 over its read or
write limit; 503 for a write whose limit cannot be checked)."""


def require(permission: Permission) -> DependsParam:
    """A dependency allowing only callers whose role has `permission` (403 otherwise).

    Use it in `dependencies=[require(...)]`, or as `Annotated[Principal, require(...)]`
    to also get the caller.
    """

    async def has_permission(caller: CurrentUser) -> Principal:
        if not caller.can(permission):
            raise Forbidden(f"this needs the {permission} permission")
        return caller

    has_permission.__name__ = f"require_{permission.value.replace(':', '_')}"
    return DependsParam(has_permission)


@dataclass(frozen=True, slots=True)
class Acting:
    """An authenticated caller allowed a permission, and what a route needs to act for them."""

    caller: Principal
    services: Services
    security: Security
    auditor: Auditor
    """Stamping entries with this request's client IP and request id."""
    counted: frozenset[RateLimitScope] = frozenset()
    """Rate limits this request was counted in besides the caller's reads or writes."""


def acting(permission: Permission) -> DependsParam:
    """`require(permission)` with the services, the security and an `Auditor` bound to
    the request, resolved in one dependency instead of one each (for a hot route:
    FastAPI's work per dependency costs more than what most of them do).

    Use it as `Annotated[Acting, acting(...)]`; the checks and their order are
    `CurrentUser`'s, then the permission's.
    """

    async def act(
        request: Request,
        response: Response,
        token: Annotated[str | None, Depends(oauth2_scheme)],
    ) -> Acting:
        return await act_for(request, response, token, permission)

    act.__name__ = f"acting_{permission.value.replace(':', '_')}"
    return DependsParam(act)


async def act_for(
    request: Request,
    response: Response,
    token: str | None,
    permission: Permission,
    *,
    counted_with: Sequence[RateLimitScope] = (),
) -> Acting:
    """What `acting(permission)` resolves. The request is counted in `counted_with` too,
    in the same request to the rate limits' storage, when the caller has the permission
    (a caller without it is counted in their reads or writes only, then refused)."""
    services: Services = request.app.state.services
    security = await get_security(services)
    caller = await _caller(security, request, token)
    allowed = caller.can(permission)
    await _count(security, request, response, caller, counted_with if allowed else ())
    if not allowed:
        raise Forbidden(f"this needs the {permission} permission")
    auditor = security.auditor.bind(request_origin(request))
    return Acting(caller, services, security, auditor, frozenset(counted_with))


def bearer_token(headers: Mapping[str, str], query_params: Mapping[str, str]) -> str | None:
    """The access token of a WebSocket handshake: `Authorization: Bearer`, else `access_token`.

    Browsers cannot set headers on a WebSocket, hence the query parameter.
    """
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return query_params.get("access_token") or None


async def authenticate_websocket(websocket: WebSocket, security: Security) -> Principal:
    """The caller of a WebSocket handshake, counted in the per-user connection limit.

    Raises `Unauthorized`/`TokenExpired` (close with 4401) or `RateLimited`.
    """
    token = bearer_token(websocket.headers, websocket.query_params)
    if token is None:
        raise Unauthorized("authentication required: Authorization header or access_token")
    caller = await security.authenticate(token)
    await security.check_ws_connect(caller)
    return caller
