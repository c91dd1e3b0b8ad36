"""`config/security.yaml`: roles and permissions, token lifetimes, passwords, rate limits,
single sign-on."""

from __future__ import annotations

from typing import Annotated, Literal

from limits import parse_many
from pydantic import Field, field_validator, model_validator

from devteam.domain.enums import Role
from devteam.domain.permissions import ALL_PERMISSIONS, Permission
from devteam.settings._base import ConfigModel


def _rate_limit(value: str) -> str:
    try:
        parse_many(value)
    except ValueError as exc:
        raise ValueError(f"not a rate limit like '100/minute': {value!r}") from exc
    return value


RateLimitString = Annotated[str, Field(min_length=3)]


TokenAlgorithm = Literal["HS256", "HS384", "HS512", "RS256", "ES256"]


class TokensConfig(ConfigModel):
    algorithm: TokenAlgorithm = "HS256"
    """The only algorithm tokens are signed and accepted with (RFC 8725: no negotiation)."""
    issuer: Annotated[str, Field(min_length=1)] = "devteam"
    audience: Annotated[str, Field(min_length=1)] = "devteam-api"
    access_ttl_s: Annotated[int, Field(gt=0, le=24 * 3600)] = 15 * 60
    """Access tokens are not revocable one by one; keep them short-lived."""
    refresh_ttl_s: Annotated[int, Field(gt=0)] = 7 * 24 * 3600
    leeway_s: Annotated[int, Field(ge=0, le=300)] = 10

    @model_validator(mode="after")
    def _refresh_outlives_access(self) -> TokensConfig:
        if self.refresh_ttl_s <= self.access_ttl_s:
            raise ValueError("refresh_ttl_s must be longer than access_ttl_s")
        return self


class PasswordsConfig(ConfigModel):
    """Password policy and the argon2id cost (defaults: RFC 9106's second recommendation)."""

    min_length: Annotated[int, Field(ge=8, le=128)] = 12
    max_length: Annotated[int, Field(ge=16, le=4096)] = 256
    time_cost: Annotated[int, Field(ge=1, le=20)] = 3
    """argon2 iterations."""
    memory_cost_kib: Annotated[int, Field(ge=8, le=4 * 1024 * 1024)] = 64 * 1024
    """argon2 memory per hash, in KiB."""
    parallelism: Annotated[int, Field(ge=1, le=64)] = 4


class RateLimitsConfig(ConfigModel):
    """Moving windows per scope, e.g. "100/minute" or "10/second;1000/hour" (all apply)."""

    reads_per_user: RateLimitString = "1200/minute"
    """GET and HEAD API requests, per user: enough for a dashboard polling every second."""
    writes_per_user: RateLimitString = "120/minute"
    """Every other API request (submit, cancel, approve, refresh, ...), per user."""
    task_submissions_per_user: RateLimitString = "30/minute"
    """`POST /tasks`, per user, on top of the writes budget."""
    login_per_ip: RateLimitString = "60/minute"
    """Login attempts from one client IP, whatever the username (limits only that client)."""
    login_failures_per_client: RateLimitString = "10/minute;30/hour"
    """Failed logins per (username, client IP): guessing from one place stops there."""
    login_failures_per_username: RateLimitString = "200/hour"
    """Failed logins per username from anywhere: a higher threshold over a longer window,
    against guessing spread over many addresses."""
    ws_connect_per_user: RateLimitString = "30/minute"
    """WebSocket connections opened, per user."""
    storage_timeout_s: Annotated[float, Field(gt=0, le=30)] = 1.0
    """How long a limit check may wait for its storage (Redis). Past it, or when the
    storage fails, reads go on (the limit fails open) and writes and logins get 503."""

    @field_validator(
        "reads_per_user",
        "writes_per_user",
        "task_submissions_per_user",
        "login_per_ip",
        "login_failures_per_client",
        "login_failures_per_username",
        "ws_connect_per_user",
    )
    @classmethod
    def _valid(cls, value: str) -> str:
        return _rate_limit(value)


OidcAlgorithm = Literal["RS256", "ES256", "PS256"]
OIDC_ALGORITHMS: tuple[OidcAlgorithm, ...] = ("RS256", "ES256", "PS256")


class OidcConfig(ConfigModel):
    """Single sign-on with an OpenID Connect provider (off while `issuer` is unset).

    Every field can also be set in the environment: `DEVTEAM_OIDC_ISSUER`,
    `DEVTEAM_OIDC_AUDIENCE`, `DEVTEAM_OIDC_ROLE_MAP` (JSON), `DEVTEAM_OIDC_ALLOW_HTTP`,
    `DEVTEAM_OIDC_CLIENT_ID`, `DEVTEAM_OIDC_ROLES_CLAIM`, `DEVTEAM_OIDC_TOKEN_TYPE`; the
    environment wins.
    """

    issuer: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    """The provider's issuer URL, exactly as its tokens' `iss` says it."""
    audience: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    """The `aud` access tokens must carry to be accepted here (the API's identifier)."""
    client_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    """A public client (no secret) registered at the provider for `devteam login --sso`
    and the web UI; without it, only bearer tokens obtained elsewhere are accepted."""
    scopes: Annotated[str, Field(min_length=1, max_length=512)] = (
        "openid profile email offline_access"
    )
    """Scopes asked for by interactive sign-in."""
    token_type: Literal["access_token", "id_token"] = "access_token"
    """Which of the provider's tokens clients send as the bearer: its access token (a JWT
    for this API's audience: Entra ID, Okta, Auth0, Keycloak), or its ID token where the
    provider's access tokens are opaque (Google; then `audience` is the client id)."""
    roles_claim: Annotated[str, Field(min_length=1, max_length=128)] = "groups"
    """The claim holding the user's groups (a list of strings, or one string)."""
    role_map: dict[Annotated[str, Field(min_length=1, max_length=256)], Role] = Field(
        default_factory=dict
    )
    """Group -> role. A user takes the highest role any of their groups maps to; a user
    in no mapped group is refused."""
    allow_http: bool = False
    """Accept an `http://` issuer (a provider on loopback in development only)."""
    algorithms: Annotated[list[OidcAlgorithm], Field(min_length=1)] = Field(
        default_factory=lambda: list(OIDC_ALGORITHMS)
    )
    """Signature algorithms accepted; never `none` nor HMAC."""
    leeway_s: Annotated[int, Field(ge=0, le=300)] = 30
    """Clock skew tolerated on `exp` and `nbf`."""
    jwks_cache_s: Annotated[float, Field(gt=0, le=86400)] = 3600.0
    """How long the provider's keys are used before they are fetched again."""
    jwks_refresh_interval_s: Annotated[float, Field(ge=0, le=3600)] = 30.0
    """A token signed with a key not (yet) known fetches the keys again, at most this often,
    so a key rotation needs no restart and unknown `kid`s cannot flood the provider."""
    http_timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0
    """Timeout of each request to the provider (discovery, keys)."""

    @property
    def enabled(self) -> bool:
        return self.issuer is not None

    @model_validator(mode="after")
    def _complete(self) -> OidcConfig:
        if self.issuer is None:
            return self
        if self.audience is None:
            raise ValueError("oidc.audience is required with oidc.issuer")
        if not self.issuer.startswith(("https://", "http://")):
            raise ValueError("oidc.issuer must be an https:// URL")
        if self.issuer.startswith("http://") and not self.allow_http:
            raise ValueError(
                "oidc.issuer is http://: use https, or set DEVTEAM_OIDC_ALLOW_HTTP=true "
                "for a provider on loopback in development"
            )
        return self


Days = Annotated[float, Field(gt=0, le=100 * 365)]


class RetentionConfig(ConfigModel):
    """How long data is kept. Expired and revoked refresh tokens always go; the rest is
    kept forever unless a number of days is given."""

    finished_tasks_days: Days | None = None
    """Root tasks finished longer ago are deleted with their subtasks and events."""
    events_days: Days | None = None
    """Events of root tasks finished longer ago are deleted (the tasks stay)."""
    audit_days: Days | None = None
    """Audit log entries older than this are deleted."""
    interval_s: Annotated[float, Field(ge=1, le=7 * 24 * 3600)] = 3600
    """How often each `serve` and `worker` process runs the purge."""
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 500
    """Rows deleted per transaction: short transactions, and concurrent runs are harmless."""


class SecurityConfig(ConfigModel):
    tokens: TokensConfig = TokensConfig()
    session_cache_ttl_s: Annotated[float, Field(ge=0, le=60)] = 5.0
    """How long a process trusts a session it found alive without asking the database
    again; revocations reach every process at once through the broker, and within
    this time even if the broker loses the message. 0: ask the database every time."""
    passwords: PasswordsConfig = PasswordsConfig()
    rate_limits: RateLimitsConfig = RateLimitsConfig()
    oidc: OidcConfig = OidcConfig()
    retention: RetentionConfig = RetentionConfig()
    roles: dict[Role, list[str]] = Field(
        default_factory=lambda: {
            Role.ADMIN: ["*"],
            Role.OPERATOR: [
                "tasks:create",
                "tasks:read:own",
                "tasks:read:any",
                "tasks:cancel:own",
                "tasks:cancel:any",
                "tasks:approve:own",
                "mcp:read",
                "rules:read",
                "rules:manage",
                "agents:read",
                "users:read:own",
                "projects:read",
                "projects:manage",
            ],
            Role.DEVELOPER: [
                "tasks:create",
                "tasks:read:own",
                "tasks:cancel:own",
                "tasks:approve:own",
                "agents:read",
                "users:read:own",
                "projects:read",
            ],
            Role.VIEWER: ["tasks:read:own", "agents:read", "users:read:own", "projects:read"],
        }
    )
    """Role -> permissions; `*` grants every permission. A role left out has none."""

    @field_validator("roles")
    @classmethod
    def _known_permissions(cls, roles: dict[Role, list[str]]) -> dict[Role, list[str]]:
        known = {p.value for p in Permission} | {ALL_PERMISSIONS}
        for role, permissions in roles.items():
            for permission in permissions:
                if permission not in known:
                    raise ValueError(f"{role.value}: unknown permission {permission!r}")
        return roles
