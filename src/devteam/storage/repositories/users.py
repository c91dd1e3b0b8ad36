"""Users."""

from __future__ import annotations

import uuid
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from devteam.domain.enums import Role
from devteam.domain.errors import Conflict
from devteam.domain.users import User, UserWithSecret
from devteam.storage.repositories._base import Repository
from devteam.storage.tables import users
from devteam.storage.types import utcnow

PUBLIC_USER_COLUMNS = [c for c in users.c if c.name != "password_hash"]

NO_PASSWORD = "!sso"
"""The password hash of a user who signs in with the identity provider: matches nothing."""


class UserRepository(Repository):
    async def create(
        self,
        username: str,
        password_hash: str,
        role: Role,
        *,
        issuer: str | None = None,
        subject: str | None = None,
    ) -> User:
        """A new active user; `Conflict` when the username (or the provider's subject) is
        taken. `issuer` and `subject` name the identity provider's user, if any."""
        now = utcnow()
        values = {
            "id": uuid.uuid4(),
            "username": username,
            "password_hash": password_hash,
            "role": role.value,
            "is_active": True,
            "created_at": now,
            "updated_at": now,
            "oidc_issuer": issuer,
            "oidc_subject": subject,
        }
        try:
            async with self.conn.begin_nested():
                await self.conn.execute(sa.insert(users).values(values))
        except IntegrityError:
            raise Conflict(f"user {username!r} already exists") from None
        return User.model_validate(values)

    async def create_external(
        self, username: str, role: Role, *, issuer: str, subject: str
    ) -> User:
        """A user of the identity provider, seen for the first time; no password.

        `Conflict` when the username is taken (by a local user or another subject).
        """
        return await self.create(username, NO_PASSWORD, role, issuer=issuer, subject=subject)

    async def get_external(self, issuer: str, subject: str) -> User | None:
        """The user the identity provider `issuer` knows as `subject`."""
        query = sa.select(*PUBLIC_USER_COLUMNS).where(
            users.c.oidc_issuer == issuer, users.c.oidc_subject == subject
        )
        row = (await self.conn.execute(query)).first()
        return User.model_validate(row._mapping) if row else None

    async def get(self, user_id: UUID) -> User | None:
        query = sa.select(*PUBLIC_USER_COLUMNS).where(users.c.id == user_id)
        row = (await self.conn.execute(query)).first()
        return User.model_validate(row._mapping) if row else None

    async def get_with_secret(self, username: str) -> UserWithSecret | None:
        query = sa.select(users).where(users.c.username == username)
        row = (await self.conn.execute(query)).first()
        return UserWithSecret.model_validate(row._mapping) if row else None

    async def list(self, *, limit: int = 100, after_username: str | None = None) -> list[User]:
        query = sa.select(*PUBLIC_USER_COLUMNS).order_by(users.c.username).limit(limit)
        if after_username is not None:
            query = query.where(users.c.username > after_username)
        return [User.model_validate(row._mapping) for row in await self.conn.execute(query)]

    async def set_role(self, user_id: UUID, role: Role) -> User | None:
        await self.conn.execute(
            sa.update(users)
            .where(users.c.id == user_id)
            .values(role=role.value, updated_at=utcnow())
        )
        return await self.get(user_id)

    async def set_active(self, user_id: UUID, active: bool) -> User | None:
        await self.conn.execute(
            sa.update(users)
            .where(users.c.id == user_id)
            .values(is_active=active, updated_at=utcnow())
        )
        return await self.get(user_id)

    async def set_password_hash(self, user_id: UUID, password_hash: str) -> None:
        await self.conn.execute(
            sa.update(users)
            .where(users.c.id == user_id)
            .values(password_hash=password_hash, updated_at=utcnow())
        )

    async def count(self, *, role: Role | None = None, active: bool | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(users)
        if role is not None:
            query = query.where(users.c.role == role.value)
        if active is not None:
            query = query.where(users.c.is_active == active)
        return int(await self.conn.scalar(query) or 0)
