"""The periodic checks of long-lived connections' tokens, batched.

Each WebSocket connection checks its access token again at every heartbeat: the
token must still verify, its session must be alive and its user active. With
many connections those checks come all the time, each a query of its own. Here
the checks due within `window_s` share one query: a check waits at most that
long, identical ones (the same session) are asked once, and a batch of distinct
sessions is one statement.
"""

from __future__ import annotations

import asyncio
import contextlib
from uuid import UUID

from devteam.domain.errors import Unauthorized
from devteam.domain.users import User
from devteam.security.rbac import Principal, RolePermissions
from devteam.security.session_cache import SessionCache
from devteam.security.tokens import TokenCodec, TokenType
from devteam.storage import Store

SessionKey = tuple[UUID, UUID]
"""(session id, user id)."""

WINDOW_S = 0.1


class SessionChecks:
    def __init__(
        self,
        store: Store,
        tokens: TokenCodec,
        permissions: RolePermissions,
        *,
        cache: SessionCache | None = None,
        window_s: float = WINDOW_S,
    ) -> None:
        self.cache = cache
        self.store = store
        self.tokens = tokens
        self.permissions = permissions
        self.window_s = window_s
        self._pending: dict[SessionKey, asyncio.Future[User | None]] = {}
        self._flusher: asyncio.Task[None] | None = None

    async def authenticate(self, access_token: str) -> Principal:
        """Like `Sessions.authenticate`, answered by the next batch's query.

        Raises `Unauthorized` or `TokenExpired`.
        """
        claims = self.tokens.decode(access_token, TokenType.ACCESS)
        key = (claims.session_id, claims.subject)
        cached = self.cache.get(key) if self.cache is not None else None
        if cached is not None:
            return self.permissions.principal(cached, session_id=claims.session_id)
        answer = self._pending.get(key)
        if answer is None:
            answer = self._pending[key] = asyncio.get_running_loop().create_future()
            # Read the outcome even if every caller went away meanwhile.
            answer.add_done_callback(_retrieve)
            if self._flusher is None:
                self._flusher = asyncio.create_task(self._flush(), name="session-checks")
        # Shielded: one caller giving up does not cancel the answer of the others.
        user = await asyncio.shield(answer)
        if user is None or not user.is_active:
            raise Unauthorized("the session has ended; log in again")
        return self.permissions.principal(user, session_id=claims.session_id)

    async def _flush(self) -> None:
        batch: dict[SessionKey, asyncio.Future[User | None]] = {}
        try:
            await asyncio.sleep(self.window_s)
            batch, self._pending, self._flusher = self._pending, {}, None
            generation = self.cache.generation if self.cache is not None else 0
            async with self.store.read_statement() as tx:
                users = await tx.refresh_tokens.session_users(list(batch))
        except BaseException as exc:
            if self._flusher is asyncio.current_task():
                batch, self._pending, self._flusher = self._pending, {}, None
            for answer in batch.values():
                if isinstance(exc, Exception):
                    answer.set_exception(exc)
                else:
                    answer.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        for key, answer in batch.items():
            user = users.get(key)
            if user is not None and self.cache is not None:
                self.cache.put(key, user, generation)
            answer.set_result(user)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher


def _retrieve(answer: asyncio.Future[User | None]) -> None:
    if not answer.cancelled():
        answer.exception()
