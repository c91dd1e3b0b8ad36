"""User accounts: create, list, change role, deactivate — each change audited.

Usernames are case-insensitive: they are stored in lower case, 3-64 characters of
letters, digits, `.`, `_` and `-`, starting with a letter or digit.
"""

from __future__ import annotations

import re
from uuid import UUID

from devteam.domain.audit import AuditOutcome
from devteam.domain.enums import Role
from devteam.domain.errors import Conflict, NotFound, ValidationFailed
from devteam.domain.users import User
from devteam.security.audit import AuditAction, Auditor
from devteam.security.passwords import Passwords
from devteam.security.session_cache import SessionCache
from devteam.storage import Store

USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{2,63}$"
_USERNAME = re.compile(USERNAME_PATTERN)


def normalize_username(username: str) -> str:
    """The stored form of a username: trimmed and lower case."""
    return username.strip().lower()


def check_username(username: str) -> str:
    """The normalized username, or `ValidationFailed` naming the rule."""
    name = normalize_username(username)
    if not _USERNAME.fullmatch(name):
        message = "3-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        raise ValidationFailed(
            f"username: {message}",
            details=[
                {
                    "loc": ["body", "username"],
                    "field": "username",
                    "message": message,
                    "type": "value_error",
                }
            ],
        )
    return name


class Accounts:
    def __init__(
        self, store: Store, passwords: Passwords, cache: SessionCache | None = None
    ) -> None:
        self.store = store
        self.passwords = passwords
        self.cache = cache
        """Told about role changes and deactivations, so every process forgets the
        user's cached sessions (None: a process that caches no sessions, e.g. the CLI)."""

    async def create(
        self,
        username: str,
        password: str,
        role: Role,
        *,
        auditor: Auditor,
        actor: User | str | None,
    ) -> User:
        """Create a user; `Conflict` when the username is taken."""
        name = check_username(username)
        self.passwords.check_policy(password)
        password_hash = await self.passwords.hash(password)
        try:
            async with self.store.transaction() as tx:
                user = await tx.users.create(name, password_hash, role)
                await auditor.record(
                    AuditAction.USER_CREATE,
                    AuditOutcome.SUCCESS,
                    actor=actor,
                    resource_type="user",
                    resource_id=user.id,
                    details={"username": name, "role": role.value},
                    tx=tx,
                )
        except Conflict:
            await auditor.record(
                AuditAction.USER_CREATE,
                AuditOutcome.FAILURE,
                actor=actor,
                resource_type="user",
                details={"username": name, "role": role.value, "reason": "exists"},
            )
            raise
        return user

    async def get(self, user_id: UUID) -> User:
        async with self.store.read() as tx:
            user = await tx.users.get(user_id)
        if user is None:
            raise NotFound(f"user {user_id} not found")
        return user

    async def list(self, *, limit: int = 50, after_username: str | None = None) -> list[User]:
        """Users in username order, after `after_username`."""
        async with self.store.read() as tx:
            return await tx.users.list(limit=limit, after_username=after_username)

    async def update(
        self,
        user_id: UUID,
        *,
        role: Role | None = None,
        is_active: bool | None = None,
        auditor: Auditor,
        actor: User | str | None,
    ) -> User:
        """Change a user's role and/or active flag.

        Deactivating a user ends their sessions. The last active admin can be
        neither demoted nor deactivated (`Conflict`), so nobody is locked out.
        """
        async with self.store.transaction() as tx:
            user = await tx.users.get(user_id)
            if user is None:
                raise NotFound(f"user {user_id} not found")
            loses_admin = (
                user.role is Role.ADMIN
                and user.is_active
                and ((role is not None and role is not Role.ADMIN) or is_active is False)
            )
            if loses_admin and await tx.users.count(role=Role.ADMIN, active=True) <= 1:
                raise Conflict("the last active admin cannot be demoted or deactivated")
            updated = user
            if role is not None and role is not user.role:
                updated = await tx.users.set_role(user_id, role) or updated
                await auditor.record(
                    AuditAction.USER_ROLE_CHANGE,
                    AuditOutcome.SUCCESS,
                    actor=actor,
                    resource_type="user",
                    resource_id=user_id,
                    details={"username": user.username, "from": user.role.value, "to": role.value},
                    tx=tx,
                )
            if is_active is not None and is_active != user.is_active:
                updated = await tx.users.set_active(user_id, is_active) or updated
                if not is_active:
                    await tx.refresh_tokens.revoke_user(user_id)
                await auditor.record(
                    AuditAction.USER_ACTIVATE if is_active else AuditAction.USER_DEACTIVATE,
                    AuditOutcome.SUCCESS,
                    actor=actor,
                    resource_type="user",
                    resource_id=user_id,
                    details={"username": user.username},
                    tx=tx,
                )
        if self.cache is not None and (updated.role, updated.is_active) != (
            user.role,
            user.is_active,
        ):
            await self.cache.user_changed(user_id)
        return updated
