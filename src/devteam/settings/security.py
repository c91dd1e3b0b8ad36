"""`config/security.yaml`: roles and permissions, token lifetimes, passwords, rate limits."""

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
    passwords: PasswordsConfig = PasswordsConfig()
    rate_limits: RateLimitsConfig = RateLimitsConfig()
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
            ],
            Role.DEVELOPER: [
                "tasks:create",
                "tasks:read:own",
                "tasks:cancel:own",
                "tasks:approve:own",
                "agents:read",
                "users:read:own",
            ],
            Role.VIEWER: ["tasks:read:own", "agents:read", "users:read:own"],
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
