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
    api_per_user: RateLimitString = "100/minute"
    login_per_ip: RateLimitString = "10/minute"
    login_per_username: RateLimitString = "10/minute"
    ws_connect_per_user: RateLimitString = "30/minute"

    @field_validator("*")
    @classmethod
    def _valid(cls, value: str) -> str:
        return _rate_limit(value)


class SecurityConfig(ConfigModel):
    tokens: TokensConfig = TokensConfig()
    passwords: PasswordsConfig = PasswordsConfig()
    rate_limits: RateLimitsConfig = RateLimitsConfig()
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
