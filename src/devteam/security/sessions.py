"""Sessions: login, refresh with rotation and reuse detection, logout, authentication.

A session is a family of refresh tokens, started by a login. Each refresh uses the
presented refresh token up and issues the next one of the family; the database
records every refresh token by the hash of its `jti`, so rotation and revocation
hold across processes. Presenting a used refresh token again means it was copied:
the whole family is revoked and the answer is `token_reused`. Two refreshes racing
with the same token look exactly like that, so exactly one of them gets new tokens
and the family then ends.

Access tokens name their session (`sid`) and every request checks that the
session is still alive and the user still active, so logout, reuse detection and
deactivation cut access tokens off at once, in every process. The answer comes
from the process's `SessionCache` when it has it (kept a few seconds, dropped in
every process the moment a session is revoked), else from one indexed query
(one round trip, outside any transaction).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from enum import Enum, auto
from uuid import UUID

from devteam.domain.audit import AuditOutcome
from devteam.domain.errors import InvalidCredentials, TokenReused, Unauthorized
from devteam.domain.users import User
from devteam.security.accounts import normalize_username
from devteam.security.audit import AuditAction, Auditor
from devteam.security.passwords import Passwords
from devteam.security.ratelimit import RateLimiter, RateLimitScope
from devteam.security.rbac import Principal, RolePermissions
from devteam.security.session_cache import MAX_ENTRIES, SessionCache, SessionKey
from devteam.security.token_cache import VerifiedTokens
from devteam.security.tokens import TokenClaims, TokenCodec, TokenType, hash_token_id
from devteam.storage import Store, UnitOfWork


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    """Seconds the access token is valid for."""
    user: User
    session_id: UUID


class _Refused(Enum):
    UNKNOWN = auto()
    REVOKED = auto()
    REUSED = auto()
    INACTIVE = auto()


class Sessions:
    def __init__(
        self,
        store: Store,
        tokens: TokenCodec,
        passwords: Passwords,
        permissions: RolePermissions,
        limiter: RateLimiter,
        cache: SessionCache,
    ) -> None:
        self.store = store
        self.cache = cache
        self.tokens = tokens
        self.verified = VerifiedTokens(tokens)
        self.passwords = passwords
        self.permissions = permissions
        self.limiter = limiter
        self._reading: dict[SessionKey, tuple[int, asyncio.Task[User | None]]] = {}
        """Session reads in flight, with the cache generation each started in."""
        self._principals: dict[SessionKey, tuple[User, Principal]] = {}
        """The caller last made of each session's user (the same `User` makes the same one)."""

    async def login(self, username: str, password: str, *, auditor: Auditor) -> TokenPair:
        """Check a username and password and start a session.

        An unknown user, a wrong password and a deactivated user get the same
        `InvalidCredentials`, after the same amount of hashing work.

        Limits: every attempt counts for its client IP; failures count per
        (username, client IP) and, at a higher threshold, per username. So guessing
        from one place stops there, while the owner still logs in from elsewhere.
        """
        name = normalize_username(username)
        client_ip = auditor.origin.client_ip or "unknown"
        client = f"{name}\x00{client_ip}"
        await self.limiter.hit(RateLimitScope.LOGIN_IP, client_ip)
        await self.limiter.check(RateLimitScope.LOGIN_FAILURES_CLIENT, client)
        await self.limiter.check(RateLimitScope.LOGIN_FAILURES_USERNAME, name)
        async with self.store.read() as tx:
            user = await tx.users.get_with_secret(name)
        if user is None:
            valid = await self.passwords.verify_unknown_user(password)
            reason = "unknown user"
        else:
            valid = await self.passwords.verify(user.password_hash, password)
            reason = "wrong password" if not valid else "inactive user"
            valid = valid and user.is_active
        if user is None or not valid:
            await self.limiter.record(RateLimitScope.LOGIN_FAILURES_CLIENT, client)
            await self.limiter.record(RateLimitScope.LOGIN_FAILURES_USERNAME, name)
            await auditor.record(
                AuditAction.LOGIN,
                AuditOutcome.FAILURE,
                actor=user or name,
                resource_type="user",
                resource_id=user.id if user else None,
                details={"reason": reason},
            )
            raise InvalidCredentials()
        public = User.model_validate(user.model_dump(include=set(User.model_fields)))
        # Hash before the transaction, so no write lock is held while hashing.
        upgraded = None
        if self.passwords.needs_rehash(user.password_hash):
            upgraded = await self.passwords.hash(password)
        async with self.store.transaction() as tx:
            if upgraded is not None:
                await tx.users.set_password_hash(user.id, upgraded)
            pair = await self._start(tx, public, session_id=uuid.uuid4())
            await auditor.record(
                AuditAction.LOGIN,
                AuditOutcome.SUCCESS,
                actor=public,
                resource_type="session",
                resource_id=pair.session_id,
                tx=tx,
            )
        return pair

    async def refresh(self, refresh_token: str, *, auditor: Auditor) -> TokenPair:
        """Use a refresh token up and return the next pair of its session."""
        claims = self.tokens.decode(refresh_token, TokenType.REFRESH)
        await self.limiter.hit(RateLimitScope.WRITE, str(claims.subject))
        refused: _Refused | None = None
        pair: TokenPair | None = None
        async with self.store.transaction() as tx:
            record = await tx.refresh_tokens.get_by_jti_hash(hash_token_id(claims.token_id))
            user = await tx.users.get(claims.subject)
            if record is None or record.user_id != claims.subject or user is None:
                refused = _Refused.UNKNOWN
            elif record.used_at is not None:
                refused = _Refused.REUSED
            elif record.revoked_at is not None:
                refused = _Refused.REVOKED
            elif not user.is_active:
                refused = _Refused.INACTIVE
            else:
                next_id = uuid.uuid4()
                # Conditional on the token being unused: of racing refreshes, one wins.
                if await tx.refresh_tokens.mark_used(record.id, replaced_by=next_id):
                    pair = await self._start(
                        tx, user, session_id=record.family_id, token_row_id=next_id
                    )
                else:
                    refused = _Refused.REUSED
            if refused is _Refused.REUSED:
                assert record is not None
                await tx.refresh_tokens.revoke_family(record.family_id)
            await self._audit_refresh(tx, auditor, claims, user, refused)
        if refused is _Refused.REUSED:
            assert record is not None
            await self.cache.session_revoked(record.family_id)
            raise TokenReused("refresh token already used: the session is revoked")
        if refused is not None or pair is None:
            raise Unauthorized("invalid refresh token")
        return pair

    async def logout(self, caller: Principal, *, auditor: Auditor) -> None:
        """End the caller's session: its refresh tokens and access tokens stop working."""
        if caller.session_id is None:
            return
        async with self.store.transaction() as tx:
            await tx.refresh_tokens.revoke_family(caller.session_id)
            await auditor.record(
                AuditAction.LOGOUT,
                AuditOutcome.SUCCESS,
                actor=caller,
                resource_type="session",
                resource_id=caller.session_id,
                tx=tx,
            )
        await self.cache.session_revoked(caller.session_id)

    async def authenticate(self, access_token: str) -> Principal:
        """The caller an access token stands for; `Unauthorized`/`TokenExpired` otherwise.

        Checks the token, then that its session is alive and its user active, and
        returns the user as stored now (a role change applies at once).
        """
        claims = self.verified.access_claims(access_token)
        key = (claims.session_id, claims.subject)
        user = self.cache.get(key)
        if user is None:
            user = await self._session_user(key)
        if user is None or not user.is_active:
            raise Unauthorized("the session has ended; log in again")
        known = self._principals.get(key)
        if known is not None and known[0] is user:
            return known[1]
        principal = self.permissions.principal(user, session_id=claims.session_id)
        if len(self._principals) >= MAX_ENTRIES:
            self._principals.pop(next(iter(self._principals)))
        self._principals[key] = (user, principal)
        return principal

    async def _session_user(self, key: SessionKey) -> User | None:
        """The session's user from the database (None when the session has ended).

        Requests of one session arriving together (its cache entry just expired)
        share one read, unless a session changed since it started: then they read
        again, so nothing revoked before a request came is let through.
        """
        generation = self.cache.generation
        reading = self._reading.get(key)
        if reading is None or reading[0] != generation:
            read = asyncio.create_task(self._read_session(key, generation))
            reading = self._reading[key] = (generation, read)
            read.add_done_callback(lambda _: self._forget_read(key, reading))
        return await asyncio.shield(reading[1])

    async def _read_session(self, key: SessionKey, generation: int) -> User | None:
        async with self.store.read_statement() as tx:
            user = await tx.refresh_tokens.session_user(*key)
        if user is not None:
            self.cache.put(key, user, generation)
        return user

    def _forget_read(self, key: SessionKey, reading: tuple[int, asyncio.Task[User | None]]) -> None:
        if self._reading.get(key) is reading:
            del self._reading[key]
        if not reading[1].cancelled():
            reading[1].exception()  # retrieved even when every request waiting for it left

    async def _start(
        self,
        tx: UnitOfWork,
        user: User,
        *,
        session_id: UUID,
        token_row_id: UUID | None = None,
    ) -> TokenPair:
        access = self.tokens.issue(TokenType.ACCESS, subject=user.id, session_id=session_id)
        refresh = self.tokens.issue(TokenType.REFRESH, subject=user.id, session_id=session_id)
        await tx.refresh_tokens.insert(
            token_id=token_row_id or uuid.uuid4(),
            jti_hash=hash_token_id(refresh.claims.token_id),
            family_id=session_id,
            user_id=user.id,
            issued_at=refresh.claims.issued_at,
            expires_at=refresh.claims.expires_at,
        )
        return TokenPair(
            access_token=access.token,
            refresh_token=refresh.token,
            expires_in=self.tokens.config.access_ttl_s,
            user=user,
            session_id=session_id,
        )

    @staticmethod
    async def _audit_refresh(
        tx: UnitOfWork,
        auditor: Auditor,
        claims: TokenClaims,
        user: User | None,
        refused: _Refused | None,
    ) -> None:
        actor: User | str = user if user is not None else str(claims.subject)
        if refused is _Refused.REUSED:
            action, outcome, details = AuditAction.TOKEN_REUSE, AuditOutcome.DENIED, {}
        elif refused is not None:
            action, outcome = AuditAction.REFRESH, AuditOutcome.FAILURE
            details = {"reason": refused.name.lower()}
        else:
            action, outcome, details = AuditAction.REFRESH, AuditOutcome.SUCCESS, {}
        await auditor.record(
            action,
            outcome,
            actor=actor,
            resource_type="session",
            resource_id=claims.session_id,
            details=details,
            tx=tx,
        )
