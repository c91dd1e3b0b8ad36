"""Security: passwords (argon2), tokens (JWT), sessions, RBAC, audit log, rate limits.

`Security` holds one of each, built once per process from the settings, the YAML
config, the store and the broker's rate-limit storage.
"""

from __future__ import annotations

from dataclasses import dataclass

from limits.aio.storage import Storage

from devteam.security.accounts import Accounts
from devteam.security.audit import AuditAction, Auditor, Origin
from devteam.security.passwords import Passwords
from devteam.security.ratelimit import RateLimiter, RateLimitScope, RateLimitState
from devteam.security.rbac import Principal, RolePermissions, authorize_owned
from devteam.security.session_checks import SessionChecks
from devteam.security.sessions import Sessions, TokenPair
from devteam.security.tokens import TokenCodec, load_signing_keys
from devteam.settings import AppConfig, Settings
from devteam.storage import Store

__all__ = [
    "Accounts",
    "AuditAction",
    "Auditor",
    "Origin",
    "Passwords",
    "Principal",
    "RateLimitScope",
    "RateLimitState",
    "RateLimiter",
    "RolePermissions",
    "Security",
    "SessionChecks",
    "Sessions",
    "TokenCodec",
    "TokenPair",
    "authorize_owned",
]


@dataclass(frozen=True)
class Security:
    passwords: Passwords
    tokens: TokenCodec
    permissions: RolePermissions
    rate_limiter: RateLimiter
    auditor: Auditor
    """Unbound (no origin); routes get one bound to their request."""
    sessions: Sessions
    accounts: Accounts
    session_checks: SessionChecks
    """The heartbeats' checks of WebSocket connections' tokens, one query per batch."""

    @classmethod
    def create(
        cls, settings: Settings, config: AppConfig, store: Store, rate_limit_storage: Storage
    ) -> Security:
        """Build every part; raises `ConfigError` for unusable token keys."""
        tokens = TokenCodec(
            load_signing_keys(settings, config.security.tokens), config.security.tokens
        )
        passwords = Passwords(config.security.passwords)
        permissions = RolePermissions(config.security.roles)
        limiter = RateLimiter(rate_limit_storage, config.security.rate_limits)
        return cls(
            passwords=passwords,
            tokens=tokens,
            permissions=permissions,
            rate_limiter=limiter,
            auditor=Auditor(store),
            sessions=Sessions(store, tokens, passwords, permissions, limiter),
            accounts=Accounts(store, passwords),
            session_checks=SessionChecks(store, tokens, permissions),
        )

    async def authenticate(self, access_token: str) -> Principal:
        """The caller behind a raw access token (e.g. from a WebSocket handshake).

        Raises `Unauthorized` or `TokenExpired` (both 401; a WebSocket closes with 4401).
        """
        return await self.sessions.authenticate(access_token)

    async def check_ws_connect(self, caller: Principal) -> RateLimitState | None:
        """Count one WebSocket connection of `caller`; `RateLimited` when over the limit
        (None when the limit's storage is unreachable: connects fail open)."""
        return await self.rate_limiter.hit(RateLimitScope.WS_CONNECT, str(caller.id))
