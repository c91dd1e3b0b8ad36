"""Account management by admins: create, list, change role, deactivate."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from devteam.domain.enums import Role
from tests.auth import PASSWORD, add_user, assert_error, bearer, login


@pytest.fixture
async def admin_client(
    make_auth_client: Callable[..., Any], database_url: str
) -> AsyncIterator[tuple[Any, httpx.AsyncClient, dict[str, str]]]:
    async with make_auth_client(database_url=database_url) as (app, client):
        admin = await add_user(app, Role.ADMIN, "root")
        headers = bearer((await login(client, admin.username))["access_token"])
        yield app, client, headers


async def test_create_user_then_log_in(admin_client: Any) -> None:
    _, client, headers = admin_client
    response = await client.post(
        "/api/v1/users",
        json={"username": "Ada.Lovelace", "password": PASSWORD, "role": "operator"},
        headers=headers,
    )
    assert response.status_code == 201
    body = response.json()
    assert body["username"] == "ada.lovelace"
    assert body["role"] == "operator"
    assert set(body) == {"id", "username", "role", "is_active", "created_at"}
    assert PASSWORD not in response.text
    tokens = await login(client, "ada.lovelace")
    me = await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
    assert me.json()["id"] == body["id"]


async def test_existing_username_is_a_conflict(admin_client: Any) -> None:
    _, client, headers = admin_client
    body = {"username": "ada", "password": PASSWORD, "role": "viewer"}
    assert (await client.post("/api/v1/users", json=body, headers=headers)).status_code == 201
    again = await client.post("/api/v1/users", json={**body, "username": "ADA"}, headers=headers)
    assert_error(again, 409, "conflict")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "ada", "password": "short", "role": "viewer"}, "password"),
        ({"username": "a d", "password": PASSWORD, "role": "viewer"}, "username"),
        ({"username": "-ada", "password": PASSWORD, "role": "viewer"}, "username"),
        ({"username": "ada", "password": PASSWORD, "role": "superuser"}, "role"),
        ({"username": "ada", "role": "viewer"}, "password"),
    ],
    ids=["short-password", "space", "leading-dash", "unknown-role", "no-password"],
)
async def test_invalid_new_users(admin_client: Any, body: dict[str, Any], field: str) -> None:
    _, client, headers = admin_client
    response = await client.post("/api/v1/users", json=body, headers=headers)
    assert_error(response, 422, "validation_error")
    assert [d["field"] for d in response.json()["error"]["details"]] == [field]
    if "password" in body:
        assert body["password"] not in response.text


async def test_list_users_in_pages(admin_client: Any) -> None:
    app, client, headers = admin_client
    for name in ("dora", "bob", "carl", "ada"):
        await add_user(app, Role.VIEWER, name)
    names, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/users", params=params, headers=headers)).json()
        names.append([u["username"] for u in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert names == [["ada", "bob"], ["carl", "dora"], ["root"]]


async def test_change_role_and_deactivate(admin_client: Any) -> None:
    app, client, headers = admin_client
    user = await add_user(app, Role.VIEWER)
    promoted = await client.patch(
        f"/api/v1/users/{user.id}", json={"role": "developer"}, headers=headers
    )
    assert promoted.status_code == 200
    assert promoted.json()["role"] == "developer"
    deactivated = await client.patch(
        f"/api/v1/users/{user.id}", json={"is_active": False}, headers=headers
    )
    assert deactivated.json()["is_active"] is False
    reactivated = await client.patch(
        f"/api/v1/users/{user.id}", json={"is_active": True}, headers=headers
    )
    assert reactivated.json()["is_active"] is True
    assert (await login(client, user.username))["access_token"]


async def test_the_last_admin_stays(admin_client: Any) -> None:
    app, client, headers = admin_client
    me = (await client.get("/api/v1/users/me", headers=headers)).json()
    demote = await client.patch(
        f"/api/v1/users/{me['id']}", json={"role": "viewer"}, headers=headers
    )
    deactivate = await client.patch(
        f"/api/v1/users/{me['id']}", json={"is_active": False}, headers=headers
    )
    assert_error(demote, 409, "conflict")
    assert_error(deactivate, 409, "conflict")
    # With a second admin, the first may step down.
    await add_user(app, Role.ADMIN)
    stepped_down = await client.patch(
        f"/api/v1/users/{me['id']}", json={"role": "operator"}, headers=headers
    )
    assert stepped_down.json()["role"] == "operator"


@pytest.mark.parametrize(
    "body", [{}, {"role": None}, {"username": "x"}], ids=["empty", "null", "unknown-field"]
)
async def test_update_needs_a_change(admin_client: Any, body: dict[str, Any]) -> None:
    app, client, headers = admin_client
    user = await add_user(app)
    response = await client.patch(f"/api/v1/users/{user.id}", json=body, headers=headers)
    assert_error(response, 422, "validation_error")


async def test_not_a_uuid(admin_client: Any) -> None:
    _, client, headers = admin_client
    response = await client.get("/api/v1/users/not-a-uuid", headers=headers)
    assert_error(response, 422, "validation_error")
