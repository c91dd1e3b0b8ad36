"""`config/security.yaml`: roles and permissions, token lifetimes, rate limits."""

from __future__ import annotations

from typing import Annotated, Literal

from limits import parse_many
from pydantic import Field, field_validator

from devteam.domain.enums import Role
from devteam.settings._base import ConfigModel


def _rate_limit(value: str) -> str:
    try:
        parse_many(value)
    except ValueError as exc:
        raise ValueError(f"not a rate limit like '100/minute': {value!r}") from exc
    return value


RateLimitString = Annotated[str, Field(min_length=3)]


class TokensConfig(ConfigModel):
    algorithm: Literal["HS256", "HS384", "HS512", "RS256", "ES256"] = "HS256"
    issuer: str = "devteam"
    audience: str = "devteam-api"
    access_ttl_s: Annotated[int, Field(gt=0)] = 15 * 60
    refresh_ttl_s: Annotated[int, Field(gt=0)] = 7 * 24 * 3600
    leeway_s: Annotated[int, Field(ge=0, le=300)] = 10


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
            ],
            Role.DEVELOPER: [
                "tasks:create",
                "tasks:read:own",
                "tasks:cancel:own",
                "tasks:approve:own",
                "agents:read",
            ],
            Role.VIEWER: ["tasks:read:own", "agents:read"],
        }
    )
    """Role -> permissions; `*` grants every permission."""
