"""Batched checks of connections' tokens, on SQLite and a real Postgres."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import event

from devteam.domain.enums import Role
from devteam.domain.errors import TokenExpired, Unauthorized
from devteam.security import RolePermissions, SessionChecks, TokenCodec
from devteam.security.tokens import TokenType, load_signing_keys
from devteam.settings import Settings
from devteam.settings.security import SecurityConfig, TokensConfig
from devteam.storage import Store
from devteam.storage.repositories.tokens import RefreshTokenRepository
from devteam.storage.types import utcnow
from tests.factories import create_user

SECRET = "session-checks-secret-that-is-long-enough-0123456789"


def codec(**config: object) -> TokenCodec:
    tokens = TokensConfig.model_validate(config)
    return TokenCodec(load_signing_keys(Settings(jwt_secret=SECRET), tokens), tokens)


async def start_session(store: Store, user_id: uuid.UUID, ttl: timedelta) -> uuid.UUID:
    session = uuid.uuid4()
    now = utcnow()
    async with store.transaction() as tx:
        await tx.refresh_tokens.insert(
            token_id=uuid.uuid4(),
            jti_hash=uuid.uuid4().hex * 2,
            family_id=session,
            user_id=user_id,
            issued_at=now,
            expires_at=now + ttl,
        )
    return session


def count_queries(store: Store) -> list[str]:
    seen: list[str] = []

    @event.listens_for(store.db.engine.sync_engine, "before_cursor_execute")
    def _count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    return seen


async def test_checks_due_together_share_one_query(store: Store) -> None:
    tokens = codec()
    checks = SessionChecks(store, tokens, RolePermissions(SecurityConfig().roles), window_s=0.05)
    ada, bob = await create_user(store), await create_user(store, role=Role.VIEWER)
    ada_session = await start_session(store, ada.id, timedelta(days=1))
    bob_session = await start_session(store, bob.id, timedelta(days=1))
    ada_token = tokens.issue(TokenType.ACCESS, subject=ada.id, session_id=ada_session).token
    bob_token = tokens.issue(TokenType.ACCESS, subject=bob.id, session_id=bob_session).token
    queries = count_queries(store)

    callers = await asyncio.gather(
        *(checks.authenticate(ada_token) for _ in range(20)),
        *(checks.authenticate(bob_token) for _ in range(5)),
    )

    assert len(queries) == 1
    assert {(c.id, c.role, c.session_id) for c in callers} == {
        (ada.id, ada.role, ada_session),
        (bob.id, bob.role, bob_session),
    }
    await checks.close()


async def test_a_check_fails_for_an_ended_session_a_deactivated_user_and_a_bad_token(
    store: Store,
) -> None:
    tokens = codec()
    checks = SessionChecks(store, tokens, RolePermissions(SecurityConfig().roles), window_s=0.01)
    ada = await create_user(store)
    live = await start_session(store, ada.id, timedelta(days=1))
    expired = await start_session(store, ada.id, timedelta(seconds=-1))
    token = tokens.issue(TokenType.ACCESS, subject=ada.id, session_id=live).token
    assert (await checks.authenticate(token)).id == ada.id

    with pytest.raises(Unauthorized, match="the session has ended"):
        await checks.authenticate(
            tokens.issue(TokenType.ACCESS, subject=ada.id, session_id=expired).token
        )
    with pytest.raises(Unauthorized, match="the session has ended"):
        # A live session, but not this user's.
        other = await create_user(store)
        await checks.authenticate(
            tokens.issue(TokenType.ACCESS, subject=other.id, session_id=live).token
        )
    with pytest.raises(Unauthorized):
        await checks.authenticate(token[:-4] + "AAAA")
    with pytest.raises(TokenExpired):
        stale = codec(access_ttl_s=1, leeway_s=0)
        old = stale.issue(
            TokenType.ACCESS,
            subject=ada.id,
            session_id=live,
            now=utcnow() - timedelta(hours=1),
        ).token
        await checks.authenticate(old)

    async with store.transaction() as tx:
        await tx.users.set_active(ada.id, False)
    with pytest.raises(Unauthorized, match="the session has ended"):
        await checks.authenticate(token)
    async with store.transaction() as tx:
        await tx.users.set_active(ada.id, True)
        await tx.refresh_tokens.revoke_family(live)
    with pytest.raises(Unauthorized, match="the session has ended"):
        await checks.authenticate(token)
    await checks.close()


async def test_a_caller_giving_up_leaves_the_others_their_answer(store: Store) -> None:
    tokens = codec()
    checks = SessionChecks(store, tokens, RolePermissions(SecurityConfig().roles), window_s=0.05)
    ada = await create_user(store)
    session = await start_session(store, ada.id, timedelta(days=1))
    token = tokens.issue(TokenType.ACCESS, subject=ada.id, session_id=session).token
    leaving = asyncio.create_task(checks.authenticate(token))
    staying = asyncio.create_task(checks.authenticate(token))
    await asyncio.sleep(0.01)
    leaving.cancel()
    assert (await staying).id == ada.id
    with pytest.raises(asyncio.CancelledError):
        await leaving
    await checks.close()


async def test_a_failed_query_fails_the_batch(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = codec()
    checks = SessionChecks(store, tokens, RolePermissions(SecurityConfig().roles), window_s=0.01)
    ada = await create_user(store)
    session = await start_session(store, ada.id, timedelta(days=1))
    token = tokens.issue(TokenType.ACCESS, subject=ada.id, session_id=session).token

    async def broken(self: object, sessions: object) -> None:
        raise ConnectionError("the database went away")

    monkeypatch.setattr(RefreshTokenRepository, "session_users", broken)
    results = await asyncio.gather(
        checks.authenticate(token), checks.authenticate(token), return_exceptions=True
    )
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]
    monkeypatch.undo()
    assert (await checks.authenticate(token)).id == ada.id  # the next batch works again
    await checks.close()
