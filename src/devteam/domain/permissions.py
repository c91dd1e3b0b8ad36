"""Permissions: what a role may do. `config/security.yaml` maps each role to a list of them.

A permission is `<resource>:<verb>` or, when it depends on who owns the object,
`<resource>:<verb>:own` and `<resource>:<verb>:any`. The `own`/`any` pairs are named
below (`TASKS_READ`, ...) so routes check ownership in one way.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Permission(StrEnum):
    TASKS_CREATE = "tasks:create"
    TASKS_READ_OWN = "tasks:read:own"
    TASKS_READ_ANY = "tasks:read:any"
    TASKS_CANCEL_OWN = "tasks:cancel:own"
    TASKS_CANCEL_ANY = "tasks:cancel:any"
    TASKS_APPROVE_OWN = "tasks:approve:own"
    TASKS_APPROVE_ANY = "tasks:approve:any"
    AGENTS_READ = "agents:read"
    MCP_READ = "mcp:read"
    RULES_READ = "rules:read"
    RULES_MANAGE = "rules:manage"
    USERS_READ_OWN = "users:read:own"
    USERS_READ_ANY = "users:read:any"
    USERS_MANAGE = "users:manage"
    AUDIT_READ = "audit:read"
    PROJECTS_READ = "projects:read"
    PROJECTS_MANAGE = "projects:manage"


ALL_PERMISSIONS = "*"
"""Granted in security.yaml, stands for every permission (the admin role)."""


@dataclass(frozen=True, slots=True)
class PermissionPair:
    """One action on objects that have an owner: allowed on one's own, or on anyone's."""

    own: Permission
    """Allows the action on objects the caller owns."""
    any: Permission
    """Allows the action on every object."""


TASKS_READ = PermissionPair(Permission.TASKS_READ_OWN, Permission.TASKS_READ_ANY)
TASKS_CANCEL = PermissionPair(Permission.TASKS_CANCEL_OWN, Permission.TASKS_CANCEL_ANY)
TASKS_APPROVE = PermissionPair(Permission.TASKS_APPROVE_OWN, Permission.TASKS_APPROVE_ANY)
USERS_READ = PermissionPair(Permission.USERS_READ_OWN, Permission.USERS_READ_ANY)
