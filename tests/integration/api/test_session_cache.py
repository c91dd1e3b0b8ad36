"""The per-process session cache: answers without the database, forgets at once.

In one process on the memory broker: a session checked once is answered from
the cache; logout, a reused refresh token, a deactivation and a role change
reach the next request at once. Across processes: tests/e2e/test_session_revocation.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from devteam.broker.memory import MemoryPubSub
from devteam.domain.enums import Role
from devteam.domain.errors import Unauthorized
from devteam.domain.users import User
from devteam.security.session_cache import SessionCache
from devteam.storage.repositories.tokens import RefreshTokenRepository
from devteam.storage.types import utcnow
from tests.auth import add_user, assert_error, bearer, login, services_of


def cached_sessions(app: Any) -> int:
    cache = services_of(app).security.session_cache
    assert cache.active
    return len(cache._entries)


async def test_a_checked_session_is_answered_from_the_cache(
    make_auth_client: Callable[..., Any],
) -> None:
    async with make_auth_client() as (app, client):
        user = await add_user(app)
        tokens = await login(client, user.username)
        first = await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
        assert first.status_code == 200
        assert cached_sessions(app) == 1
        # The cached answer is used: the session's rows are gone, the cache still holds it.
        store = services_of(app).store
        async with store.transaction() as tx:
            await tx.refresh_tokens.revoke_user(user.id)
        again = await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
        assert again.status_code == 200


async def test_logout_refuses_the_access_token_at_once(
    make_auth_client: Callable[..., Any],
) -> None:
    async with make_auth_client() as (app, client):
        user = await add_user(app)
        tokens = await login(client, user.username)
        kept = await login(client, user.username)
        for pair in (tokens, kept):
            me = await client.get("/api/v1/users/me", headers=bearer(pair["access_token"]))
            assert me.status_code == 200
        assert cached_sessions(app) == 2
        out = await client.post("/api/v1/auth/logout", headers=bearer(tokens["access_token"]))
        assert out.status_code == 204
        me = await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
        assert_error(me, 401, "unauthorized")
        other = await client.get("/api/v1/users/me", headers=bearer(kept["access_token"]))
        assert other.status_code == 200


async def test_a_reused_refresh_token_refuses_the_sessions_access_tokens_at_once(
    make_auth_client: Callable[..., Any],
) -> None:
    async with make_auth_client() as (app, client):
        user = await add_user(app)
        tokens = await login(client, user.username)
        rotated = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert rotated.status_code == 200
        fresh = rotated.json()["access_token"]
        # Rotation keeps the session alive: the new access token works (and is cached).
        assert (await client.get("/api/v1/users/me", headers=bearer(fresh))).status_code == 200
        reused = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert_error(reused, 401, "token_reused")
        me = await client.get("/api/v1/users/me", headers=bearer(fresh))
        assert_error(me, 401, "unauthorized")


async def test_deactivation_and_role_changes_apply_at_once(
    make_auth_client: Callable[..., Any],
) -> None:
    async with make_auth_client() as (app, client):
        admin = await add_user(app, Role.ADMIN)
        admin_headers = bearer((await login(client, admin.username))["access_token"])
        user = await add_user(app, Role.DEVELOPER)
        headers = bearer((await login(client, user.username))["access_token"])
        me = await client.get("/api/v1/users/me", headers=headers)
        assert me.json()["role"] == "developer"
        changed = await client.patch(
            f"/api/v1/users/{user.id}", json={"role": "viewer"}, headers=admin_headers
        )
        assert changed.status_code == 200
        me = await client.get("/api/v1/users/me", headers=headers)
        assert me.json()["role"] == "viewer"
        submit = await client.post(
            "/api/v1/tasks", json={"task": "Write the report", "complexity": 1}, headers=headers
        )
        assert_error(submit, 403, "forbidden")
        deactivated = await client.patch(
            f"/api/v1/users/{user.id}", json={"is_active": False}, headers=admin_headers
        )
        assert deactivated.status_code == 200
        me = await client.get("/api/v1/users/me", headers=headers)
        assert_error(me, 401, "unauthorized")


def a_user() -> User:
    return User(
        id=uuid.uuid4(),
        username="ada",
        role=Role.DEVELOPER,
        is_active=True,
        created_at=utcnow(),
        updated_at=utcnow(),
    )


async def test_an_answer_read_before_a_revocation_is_not_cached() -> None:
    pubsub = MemoryPubSub()
    cache = SessionCache(60)
    await cache.follow(pubsub)
    try:
        user = a_user()
        key = (uuid.uuid4(), user.id)
        generation = cache.generation
        # A revocation lands while the database read is under way...
        await cache.session_revoked(key[0])
        cache.put(key, user, generation)
        # ...so its (stale) answer is not kept.
        assert cache.get(key) is None
        cache.put(key, user, cache.generation)
        assert cache.get(key) == user
    finally:
        await cache.close()


async def test_entries_expire_and_nothing_is_cached_without_the_channel() -> None:
    now = [0.0]
    pubsub = MemoryPubSub()
    cache = SessionCache(5, clock=lambda: now[0])
    user = a_user()
    key = (uuid.uuid4(), user.id)
    cache.put(key, user, cache.generation)
    assert cache.get(key) is None
    await cache.follow(pubsub)
    try:
        cache.put(key, user, cache.generation)
        assert cache.get(key) == user
        now[0] = 5.0
        assert cache.get(key) is None
    finally:
        await cache.close()


async def delivered(condition: Callable[[], bool], turns: int = 100) -> None:
    """Let the loop run until `condition` holds (pub/sub delivers on a later turn)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the announcement never arrived")


async def test_a_change_announced_elsewhere_is_forgotten_here() -> None:
    pubsub = MemoryPubSub()
    here, there = SessionCache(60), SessionCache(60)
    await here.follow(pubsub)
    await there.follow(pubsub)
    try:
        user = a_user()
        session, other = (uuid.uuid4(), user.id), (uuid.uuid4(), user.id)
        for key in (session, other):
            here.put(key, user, here.generation)
        # Announcements arrive on a later turn of the loop, as from Redis.
        await there.session_revoked(session[0])
        await delivered(lambda: here.get(session) is None)
        assert here.get(other) == user
        await there.user_changed(user.id)
        await delivered(lambda: here.get(other) is None)
    finally:
        await here.close()
        await there.close()


async def test_requests_arriving_together_share_one_read_unless_a_session_changed(
    make_auth_client: Callable[..., Any], monkeypatch: Any
) -> None:
    async with make_auth_client() as (app, client):
        user = await add_user(app)
        tokens = await login(client, user.username)
        security = services_of(app).security
        reads: list[tuple[uuid.UUID, uuid.UUID]] = []
        release = asyncio.Event()
        real = RefreshTokenRepository.session_user

        async def counted(self: RefreshTokenRepository, *key: Any) -> User | None:
            reads.append(key)
            await release.wait()
            return await real(self, *key)

        monkeypatch.setattr(RefreshTokenRepository, "session_user", counted)
        security.session_cache.clear()
        token = tokens["access_token"]
        together = [asyncio.create_task(security.authenticate(token)) for _ in range(5)]
        await delivered(lambda: len(reads) == 1)
        # A revocation while that read is under way: a request after it reads again.
        async with services_of(app).store.transaction() as tx:
            await tx.refresh_tokens.revoke_user(user.id)
        await security.session_cache.user_changed(user.id)
        after = asyncio.create_task(security.authenticate(token))
        await delivered(lambda: len(reads) == 2)
        release.set()
        await asyncio.gather(*together, return_exceptions=True)
        assert len(reads) == 2
        with pytest.raises(Unauthorized):
            await after
