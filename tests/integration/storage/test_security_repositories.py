"""Repository methods the security layer relies on, on SQLite and a real Postgres."""

from __future__ import annotations

import uuid
from datetime import timedelta

from devteam.domain.audit import AuditOutcome, NewAuditEntry
from devteam.domain.enums import Role
from devteam.storage import Store
from devteam.storage.types import utcnow
from tests.factories import create_user


async def insert_token(store: Store, user_id: uuid.UUID, family: uuid.UUID, ttl: timedelta) -> None:
    now = utcnow()
    async with store.transaction() as tx:
        await tx.refresh_tokens.insert(
            token_id=uuid.uuid4(),
            jti_hash=uuid.uuid4().hex * 2,
            family_id=family,
            user_id=user_id,
            issued_at=now,
            expires_at=now + ttl,
        )


async def test_a_family_lives_until_revoked_or_expired(store: Store) -> None:
    user = await create_user(store)
    live, expired, unknown = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await insert_token(store, user.id, live, timedelta(days=7))
    await insert_token(store, user.id, expired, timedelta(seconds=-1))
    async with store.read() as tx:
        assert await tx.refresh_tokens.family_active(live)
        assert not await tx.refresh_tokens.family_active(expired)
        assert not await tx.refresh_tokens.family_active(unknown)
    async with store.transaction() as tx:
        await tx.refresh_tokens.revoke_family(live)
    async with store.read() as tx:
        assert not await tx.refresh_tokens.family_active(live)


async def test_the_user_of_a_session_comes_in_one_statement_while_it_lives(store: Store) -> None:
    user, other = await create_user(store), await create_user(store)
    live, expired = uuid.uuid4(), uuid.uuid4()
    await insert_token(store, user.id, live, timedelta(days=7))
    await insert_token(store, user.id, expired, timedelta(seconds=-1))
    async with store.read_statement() as tx:
        found = await tx.refresh_tokens.session_user(live, user.id)
        assert found is not None
        assert (found.id, found.username, found.role) == (user.id, user.username, user.role)
        assert await tx.refresh_tokens.session_user(expired, user.id) is None
        assert await tx.refresh_tokens.session_user(uuid.uuid4(), user.id) is None
        # Another user's id with a live session of this one: no one.
        assert await tx.refresh_tokens.session_user(live, other.id) is None
    async with store.transaction() as tx:
        await tx.refresh_tokens.revoke_family(live)
    async with store.read_statement() as tx:
        assert await tx.refresh_tokens.session_user(live, user.id) is None


async def test_a_read_statement_sees_what_was_committed_and_holds_no_transaction(
    store: Store,
) -> None:
    user = await create_user(store)
    async with store.read_statement() as tx:
        assert await tx.users.get(user.id) == user
        # Outside a transaction (no snapshot held on SQLite either), a write committed
        # meanwhile is seen by the next statement.
        async with store.transaction() as writer:
            await writer.users.set_active(user.id, False)
        again = await tx.users.get(user.id)
        assert again is not None
        assert not again.is_active


async def test_revoking_a_user_ends_every_family(store: Store) -> None:
    user, other = await create_user(store), await create_user(store)
    families = [uuid.uuid4(), uuid.uuid4()]
    for family in families:
        await insert_token(store, user.id, family, timedelta(days=1))
    kept = uuid.uuid4()
    await insert_token(store, other.id, kept, timedelta(days=1))
    async with store.transaction() as tx:
        assert await tx.refresh_tokens.revoke_user(user.id) == 2
    async with store.read() as tx:
        assert not any([await tx.refresh_tokens.family_active(f) for f in families])
        assert await tx.refresh_tokens.family_active(kept)


async def test_user_flags_hash_and_counts(store: Store) -> None:
    admin = await create_user(store, "root", Role.ADMIN)
    await create_user(store, "ada", Role.DEVELOPER)
    async with store.transaction() as tx:
        deactivated = await tx.users.set_active(admin.id, False)
        await tx.users.set_password_hash(admin.id, "$argon2id$new")
        assert await tx.users.set_active(uuid.uuid4(), False) is None
    assert deactivated is not None
    assert not deactivated.is_active
    assert deactivated.updated_at > admin.updated_at
    async with store.read() as tx:
        stored = await tx.users.get_with_secret("root")
        assert await tx.users.count() == 2
        assert await tx.users.count(role=Role.ADMIN) == 1
        assert await tx.users.count(role=Role.ADMIN, active=True) == 0
        assert await tx.users.count(active=True) == 1
    assert stored is not None
    assert stored.password_hash == "$argon2id$new"


async def test_audit_entries_keep_the_actor_id(store: Store) -> None:
    user = await create_user(store)
    async with store.transaction() as tx:
        await tx.audit.append(
            NewAuditEntry(
                action="user.create",
                outcome=AuditOutcome.SUCCESS,
                actor_id=user.id,
                actor=user.username,
                details={"id": str(user.id)},
            )
        )
    async with store.read() as tx:
        [entry] = await tx.audit.list(actor_id=user.id)
    assert entry.actor_id == user.id
    assert entry.details == {"id": str(user.id)}
