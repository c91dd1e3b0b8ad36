"""Live sessions cached per process, forgotten the moment any process revokes one.

Every request with a local access token needs its session alive and its user
active. Asking the database each time costs a round trip per request; here the
answer is kept for at most `ttl_s`, and every process forgets it as soon as any
process announces a change on the broker's `SESSIONS_CHANNEL`: a session
revoked (logout, a refresh token reused) or a user deactivated or given another
role. So a revoked token stops working everywhere within the broker's delivery
time, and within `ttl_s` even if a message is lost (Redis pub/sub does not
resend what a broken connection missed).

The cache answers only while this process follows the channel: before the
subscription is live (or with `ttl_s` 0) every check asks the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from uuid import UUID

from devteam.broker.keys import SESSIONS_CHANNEL
from devteam.broker.protocol import PubSub, Subscription
from devteam.domain.users import User
from devteam.observability.logging import get_logger

log = get_logger(__name__)

SessionKey = tuple[UUID, UUID]
"""(session id, user id)."""

MAX_ENTRIES = 100_000
"""Beyond this many sessions the oldest entries are dropped first."""


class SessionCache:
    def __init__(self, ttl_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[SessionKey, tuple[float, User]] = {}
        self._generation = 0
        """Bumped by every invalidation: an answer read before one is not cached."""
        self._pubsub: PubSub | None = None
        self._subscription: Subscription | None = None
        self._retry: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        """True while answers are kept: a positive TTL and the channel followed."""
        return self.ttl_s > 0 and self._subscription is not None

    @property
    def generation(self) -> int:
        """Take it before reading a session; hand it to `put` with the answer."""
        return self._generation

    def get(self, key: SessionKey) -> User | None:
        """The user of a live session, if known and fresh; None means: ask the database."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, user = entry
        if expires <= self._clock() or not self.active:
            self._entries.pop(key, None)
            return None
        return user

    def put(self, key: SessionKey, user: User, generation: int) -> None:
        """Remember a live session read while `generation` was current."""
        if not self.active or generation != self._generation or not user.is_active:
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (self._clock() + self.ttl_s, user)

    def forget_session(self, session_id: UUID) -> None:
        self._generation += 1
        for key in [k for k in self._entries if k[0] == session_id]:
            del self._entries[key]

    def forget_user(self, user_id: UUID) -> None:
        self._generation += 1
        for key in [k for k in self._entries if k[1] == user_id]:
            del self._entries[key]

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()

    # -- across processes --------------------------------------------------------

    async def session_revoked(self, session_id: UUID) -> None:
        """Forget a session here and tell every other process to (after the commit)."""
        self.forget_session(session_id)
        await self._announce({"session": str(session_id)})

    async def user_changed(self, user_id: UUID) -> None:
        """Forget a user's sessions here and everywhere (deactivated, role changed)."""
        self.forget_user(user_id)
        await self._announce({"user": str(user_id)})

    async def _announce(self, message: dict[str, str]) -> None:
        if self._pubsub is None:
            return
        try:
            await self._pubsub.publish(SESSIONS_CHANNEL, json.dumps(message).encode())
        except Exception as exc:
            # The change is committed; other processes see it when their entries expire.
            log.warning(
                "cannot announce a session change; other processes see it within the TTL",
                error=str(exc),
                ttl_s=self.ttl_s,
            )

    def _on_message(self, raw: bytes) -> None:
        try:
            message = json.loads(raw)
            if "session" in message:
                self.forget_session(UUID(message["session"]))
            elif "user" in message:
                self.forget_user(UUID(message["user"]))
        except (ValueError, TypeError, AttributeError):
            # Unreadable: forget everything rather than miss a revocation.
            self.clear()

    async def follow(self, pubsub: PubSub) -> None:
        """Follow the channel (retrying in the background while the broker is down).

        Announcements go out through `pubsub` from now on; answers are cached
        only once the subscription is live.
        """
        self._pubsub = pubsub
        if self.ttl_s <= 0 or await self._subscribe():
            return
        self._retry = asyncio.create_task(self._retry_subscribe(), name="session-cache-follow")

    async def _subscribe(self) -> bool:
        assert self._pubsub is not None
        try:
            self._subscription = await self._pubsub.subscribe(SESSIONS_CHANNEL, self._on_message)
        except Exception as exc:
            log.warning("cannot follow session changes yet; not caching sessions", error=str(exc))
            return False
        return True

    async def _retry_subscribe(self) -> None:
        delay = 0.5
        while not await self._subscribe():
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
            self._retry = None
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            with contextlib.suppress(Exception):
                await subscription.close()
        self.clear()
