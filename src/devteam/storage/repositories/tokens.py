"""Refresh-token records: revocation and rotation that hold across processes."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from devteam.domain.users import User
from devteam.storage.repositories._base import Repository
from devteam.storage.repositories.users import PUBLIC_USER_COLUMNS
from devteam.storage.tables import refresh_tokens, users
from devteam.storage.types import utcnow


class RefreshTokenRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: UUID
    jti_hash: str
    family_id: UUID
    user_id: UUID
    issued_at: datetime
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None
    replaced_by: UUID | None


class RefreshTokenRepository(Repository):
    async def insert(
        self,
        *,
        token_id: UUID,
        jti_hash: str,
        family_id: UUID,
        user_id: UUID,
        issued_at: datetime,
        expires_at: datetime,
    ) -> None:
        await self.conn.execute(
            sa.insert(refresh_tokens).values(
                id=token_id,
                jti_hash=jti_hash,
                family_id=family_id,
                user_id=user_id,
                issued_at=issued_at,
                expires_at=expires_at,
            )
        )

    async def get_by_jti_hash(self, jti_hash: str) -> RefreshTokenRecord | None:
        row = (
            await self.conn.execute(
                sa.select(refresh_tokens).where(refresh_tokens.c.jti_hash == jti_hash)
            )
        ).first()
        return RefreshTokenRecord.model_validate(row._mapping) if row else None

    async def mark_used(self, token_id: UUID, replaced_by: UUID) -> bool:
        """Mark a live token used; False when it was already used or revoked (a race lost)."""
        result = await self.conn.execute(
            sa.update(refresh_tokens)
            .where(
                refresh_tokens.c.id == token_id,
                refresh_tokens.c.used_at.is_(None),
                refresh_tokens.c.revoked_at.is_(None),
            )
            .values(used_at=utcnow(), replaced_by=replaced_by)
        )
        return result.rowcount == 1

    async def session_user(self, family_id: UUID, user_id: UUID) -> User | None:
        """The user, while their session (token family) is alive; None otherwise. One query."""
        alive = (
            sa.select(refresh_tokens.c.id)
            .where(
                refresh_tokens.c.family_id == family_id,
                refresh_tokens.c.user_id == user_id,
                refresh_tokens.c.revoked_at.is_(None),
                refresh_tokens.c.expires_at > utcnow(),
            )
            .exists()
        )
        query = sa.select(*PUBLIC_USER_COLUMNS).where(users.c.id == user_id, alive)
        row = (await self.conn.execute(query)).first()
        return User.model_validate(row._mapping) if row else None

    async def session_users(
        self, sessions: list[tuple[UUID, UUID]]
    ) -> dict[tuple[UUID, UUID], User]:
        """`session_user` for many (session, user) pairs in one query; only live ones answer."""
        if not sessions:
            return {}
        query = (
            sa.select(*PUBLIC_USER_COLUMNS, refresh_tokens.c.family_id)
            .join(refresh_tokens, refresh_tokens.c.user_id == users.c.id)
            .where(
                sa.tuple_(refresh_tokens.c.family_id, refresh_tokens.c.user_id).in_(sessions),
                refresh_tokens.c.revoked_at.is_(None),
                refresh_tokens.c.expires_at > utcnow(),
            )
            .distinct()
        )
        found: dict[tuple[UUID, UUID], User] = {}
        for row in await self.conn.execute(query):
            fields = dict(row._mapping)
            family = fields.pop("family_id")
            found[(family, fields["id"])] = User.model_validate(fields)
        return found

    async def family_active(self, family_id: UUID) -> bool:
        """True while the family has a token that is neither revoked nor expired."""
        query = (
            sa.select(refresh_tokens.c.id)
            .where(
                refresh_tokens.c.family_id == family_id,
                refresh_tokens.c.revoked_at.is_(None),
                refresh_tokens.c.expires_at > utcnow(),
            )
            .limit(1)
        )
        return (await self.conn.execute(query)).first() is not None

    async def revoke_family(self, family_id: UUID) -> int:
        result = await self.conn.execute(
            sa.update(refresh_tokens)
            .where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        return result.rowcount

    async def revoke_user(self, user_id: UUID) -> int:
        result = await self.conn.execute(
            sa.update(refresh_tokens)
            .where(refresh_tokens.c.user_id == user_id, refresh_tokens.c.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        return result.rowcount

    async def delete_expired(self, before: datetime) -> int:
        result = await self.conn.execute(
            sa.delete(refresh_tokens).where(refresh_tokens.c.expires_at < before)
        )
        return result.rowcount
