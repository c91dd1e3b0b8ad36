"""Security: passwords (argon2), tokens (JWT), sessions, RBAC, audit log, rate limits.

`Security` holds one of each, built once per process from the settings, the YAML
config, the store and the broker's rate-limit storage.
"""

from __future__ import annotations

from dataclasses import dataclass

from limits.aio.storage import Storage

from devteam.broker.protocol import PubSub
from devteam.domain.errors import ConfigError
from devteam.security.accounts import Accounts
from devteam.security.audit import AuditAction, Auditor, Origin
from devteam.security.oidc import OidcAuthenticator, effective_config, token_issuer
from devteam.security.passwords import Passwords
from devteam.security.ratelimit import RateLimiter, RateLimitScope, RateLimitState
from devteam.security.rbac import Principal, RolePermissions, authorize_owned
from devteam.security.session_cache import SessionCache
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
    "SessionCache",
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
    session_cache: SessionCache
    """Live sessions this process checked lately; `follow` the broker to use it."""
    oidc: OidcAuthenticator | None = None
    """Single sign-on, when an identity provider is configured."""

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
        auditor = Auditor(store)
        cache = SessionCache(config.security.session_cache_ttl_s)
        oidc_config = effective_config(settings, config.security.oidc)
        if oidc_config.enabled and oidc_config.issuer == config.security.tokens.issuer:
            raise ConfigError("single sign-on: the provider's issuer is DevTeam's own token issuer")
        return cls(
            passwords=passwords,
            tokens=tokens,
            permissions=permissions,
            rate_limiter=limiter,
            auditor=auditor,
            sessions=Sessions(store, tokens, passwords, permissions, limiter, cache),
            accounts=Accounts(store, passwords, cache),
            session_checks=SessionChecks(store, tokens, permissions, cache=cache),
            session_cache=cache,
            oidc=(
                OidcAuthenticator(oidc_config, store, permissions, auditor)
                if oidc_config.enabled
                else None
            ),
        )

    async def authenticate(self, access_token: str, *, auditor: Auditor | None = None) -> Principal:
        """The caller behind a raw access token (e.g. from a WebSocket handshake).

        A token issued by the configured identity provider is checked against it;
        every other one is a local token. Raises `Unauthorized` or `TokenExpired` (both
        401; a WebSocket closes with 4401), or `Forbidden` for a provider user with no role.
        """
        if self.oidc is not None and token_issuer(access_token) == self.oidc.issuer:
            return await self.oidc.authenticate(access_token, auditor=auditor)
        return await self.sessions.authenticate(access_token)

    async def recheck(self, access_token: str) -> Principal:
        """`authenticate` for a long-lived connection's periodic check (local ones batched)."""
        if self.oidc is not None and token_issuer(access_token) == self.oidc.issuer:
            return await self.oidc.authenticate(access_token)
        return await self.session_checks.authenticate(access_token)

    async def follow(self, pubsub: PubSub) -> None:
        """Announce session changes to, and hear them from, every process on `pubsub`;
        sessions are cached from the moment this process hears them."""
        await self.session_cache.follow(pubsub)

    async def close(self) -> None:
        await self.session_cache.close()
        await self.session_checks.close()
        if self.oidc is not None:
            await self.oidc.close()

    async def check_ws_connect(self, caller: Principal) -> RateLimitState | None:
        """Count one WebSocket connection of `caller`; `RateLimited` when over the limit
        (None when the limit's storage is unreachable: connects fail open)."""
        return await self.rate_limiter.hit(RateLimitScope.WS_CONNECT, str(caller.id))
