"""Roles to permissions, and the object-level check that answers 404 rather than 403."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devteam.domain.enums import Role
from devteam.domain.errors import ConfigError, Forbidden, NotFound
from devteam.domain.permissions import (
    TASKS_CANCEL,
    TASKS_READ,
    Permission,
)
from devteam.domain.users import User
from devteam.security.rbac import Principal, RolePermissions, authorize_owned
from devteam.settings import load_config
from devteam.settings.security import SecurityConfig

REPO = Path(__file__).resolve().parents[3]


def user(role: Role) -> User:
    now = datetime.now(UTC)
    return User(
        id=uuid.uuid4(),
        username=role.value,
        role=role,
        is_active=True,
        created_at=now,
        updated_at=now,
    )


@pytest.fixture
def permissions() -> RolePermissions:
    return RolePermissions(load_config(REPO / "config").security.roles)


def principal(permissions: RolePermissions, role: Role) -> Principal:
    return permissions.principal(user(role))


def test_admin_holds_every_permission(permissions: RolePermissions) -> None:
    assert permissions.of(Role.ADMIN) == frozenset(Permission)


def test_roles_of_api_md(permissions: RolePermissions) -> None:
    operator = permissions.of(Role.OPERATOR)
    assert {
        Permission.TASKS_READ_ANY,
        Permission.TASKS_CANCEL_ANY,
        Permission.MCP_READ,
        Permission.RULES_READ,
        Permission.RULES_MANAGE,
    } <= operator
    assert Permission.USERS_MANAGE not in operator
    assert Permission.AUDIT_READ not in operator
    assert Permission.PROJECTS_MANAGE in operator
    assert Permission.PROJECTS_MANAGE not in permissions.of(Role.DEVELOPER)
    developer = permissions.of(Role.DEVELOPER)
    assert {
        Permission.TASKS_CREATE,
        Permission.TASKS_READ_OWN,
        Permission.TASKS_CANCEL_OWN,
        Permission.TASKS_APPROVE_OWN,
    } <= developer
    assert Permission.TASKS_READ_ANY not in developer
    assert permissions.of(Role.VIEWER) == {
        Permission.TASKS_READ_OWN,
        Permission.AGENTS_READ,
        Permission.USERS_READ_OWN,
        Permission.PROJECTS_READ,
    }


def test_a_role_left_out_has_nothing() -> None:
    permissions = RolePermissions({Role.ADMIN: ["*"]})
    assert permissions.of(Role.VIEWER) == frozenset()


# Caller role, whose object, action pair, read pair -> outcome.
# fmt: off
CASES = [
    (Role.DEVELOPER, "own",   TASKS_READ,   None,       None),
    (Role.DEVELOPER, "other", TASKS_READ,   None,       NotFound),
    (Role.OPERATOR,  "other", TASKS_READ,   None,       None),
    (Role.VIEWER,    "own",   TASKS_CANCEL, TASKS_READ, Forbidden),
    (Role.VIEWER,    "other", TASKS_CANCEL, TASKS_READ, NotFound),
    (Role.DEVELOPER, "own",   TASKS_CANCEL, TASKS_READ, None),
    (Role.DEVELOPER, "other", TASKS_CANCEL, TASKS_READ, NotFound),
    (Role.OPERATOR,  "other", TASKS_CANCEL, TASKS_READ, None),
    (Role.ADMIN,     "other", TASKS_CANCEL, TASKS_READ, None),
]
# fmt: on


@pytest.mark.parametrize(
    ("role", "whose", "pair", "read", "outcome"),
    CASES,
    ids=[
        f"{c[0].value} {c[2].own.split(':')[1]} {c[1]} => {c[4].__name__ if c[4] else 'ok'}"
        for c in CASES
    ],
)
def test_authorize_owned(
    permissions: RolePermissions,
    role: Role,
    whose: str,
    pair: object,
    read: object,
    outcome: type[Exception] | None,
) -> None:
    caller = principal(permissions, role)
    owner = caller.id if whose == "own" else uuid.uuid4()
    resource = f"task {uuid.uuid4()}"

    def check() -> None:
        authorize_owned(caller, owner, pair, resource=resource, read=read)  # type: ignore[arg-type]

    if outcome is None:
        check()
    else:
        with pytest.raises(outcome) as caught:
            check()
        if outcome is NotFound:
            assert caught.value.args[0] == f"{resource} not found"


def test_owner_filter(permissions: RolePermissions) -> None:
    developer = principal(permissions, Role.DEVELOPER)
    assert principal(permissions, Role.OPERATOR).owner_filter(TASKS_READ) is None
    assert developer.owner_filter(TASKS_READ) == developer.id
    nobody = RolePermissions({}).principal(user(Role.VIEWER))
    with pytest.raises(Forbidden):
        nobody.owner_filter(TASKS_READ)


def test_principal_is_the_user(permissions: RolePermissions) -> None:
    stored = user(Role.DEVELOPER)
    caller = permissions.principal(stored, session_id=uuid.uuid4())
    assert isinstance(caller, User)
    assert (caller.id, caller.username, caller.role) == (stored.id, stored.username, stored.role)


def test_unknown_permission_in_security_yaml(tmp_path: Path) -> None:
    (tmp_path / "security.yaml").write_text("roles:\n  viewer: [tasks:read:own, task:read]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert caught.value.message == (
        f"{tmp_path / 'security.yaml'}: roles: viewer: unknown permission 'task:read'"
    )


def test_refresh_must_outlive_access(tmp_path: Path) -> None:
    (tmp_path / "security.yaml").write_text("tokens:\n  access_ttl_s: 900\n  refresh_ttl_s: 60\n")
    with pytest.raises(ConfigError, match="refresh_ttl_s must be longer than access_ttl_s"):
        load_config(tmp_path)


def test_default_config_matches_the_file() -> None:
    assert load_config(REPO / "config").security == SecurityConfig()
