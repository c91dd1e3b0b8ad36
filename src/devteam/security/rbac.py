"""Role-based access: roles map to permissions (config/security.yaml); callers carry them.

Two kinds of check:

- `Principal.can(permission)` for a whole kind of request (`users:manage`);
  refusing it answers 403, which reveals nothing about any one object.
- `authorize_owned(caller, owner_id, pair)` for one object that has an owner. A
  caller who may not even read the object gets 404 `not_found` — the same answer as
  for an object that does not exist — so existence never leaks; a caller who may
  read it but not do this to it gets 403.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal
from uuid import UUID

from devteam.domain.enums import Role
from devteam.domain.errors import Forbidden, NotFound
from devteam.domain.permissions import ALL_PERMISSIONS, Permission, PermissionPair
from devteam.domain.users import User


class RolePermissions:
    """Role -> the set of permissions it holds (`*` expanded to every permission)."""

    def __init__(self, roles: Mapping[Role, Sequence[str]]) -> None:
        self._roles: dict[Role, frozenset[Permission]] = {}
        for role in Role:
            granted = roles.get(role, ())
            if ALL_PERMISSIONS in granted:
                self._roles[role] = frozenset(Permission)
            else:
                self._roles[role] = frozenset(Permission(p) for p in granted)

    def of(self, role: Role) -> frozenset[Permission]:
        return self._roles[role]

    def principal(self, user: User, *, session_id: UUID | None = None) -> Principal:
        """`user` as an authenticated caller, with the permissions of their role."""
        fields = user.model_dump(include=set(User.model_fields))
        return Principal(**fields, permissions=self.of(user.role), session_id=session_id)


class Principal(User):
    """An authenticated caller: the user as stored now, with their role's permissions."""

    permissions: frozenset[Permission]
    session_id: UUID | None = None
    """The session (refresh-token family) the access token belongs to; None outside HTTP."""

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    def can_on(self, owner_id: UUID, pair: PermissionPair) -> bool:
        """May the caller do `pair`'s action on an object owned by `owner_id`?"""
        return self.can(pair.any) or (owner_id == self.id and self.can(pair.own))

    def scope_of(self, pair: PermissionPair) -> Literal["any", "own"] | None:
        """Which objects the caller may act on: everyone's, their own, or none."""
        if self.can(pair.any):
            return "any"
        if self.can(pair.own):
            return "own"
        return None

    def owner_filter(self, pair: PermissionPair) -> UUID | None:
        """For listings: None (every owner) or the caller's id; 403 when neither is allowed."""
        scope = self.scope_of(pair)
        if scope is None:
            raise Forbidden(f"this needs the {pair.own} or {pair.any} permission")
        return None if scope == "any" else self.id


def authorize_owned(
    caller: Principal,
    owner_id: UUID,
    pair: PermissionPair,
    *,
    resource: str,
    read: PermissionPair | None = None,
) -> None:
    """Allow `pair`'s action on one object owned by `owner_id`, or raise.

    `resource` names the object in the refusal (e.g. `f"task {task_id}"`); use the
    same words your route uses when the object does not exist, so both answers
    are identical. `read` is the pair that lets the caller see the object when it
    differs from `pair` (e.g. `read=TASKS_READ` for a cancel):

    - allowed: returns;
    - the caller may not read the object: `NotFound` (404), as if it did not exist;
    - the caller may read it but not do this: `Forbidden` (403).
    """
    if caller.can_on(owner_id, pair):
        return
    if read is None or not caller.can_on(owner_id, read):
        raise NotFound(f"{resource} not found")
    raise Forbidden(f"this needs the {pair.own} or {pair.any} permission")
