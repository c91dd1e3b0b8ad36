"""The audit log records every security event, and admins page through it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from devteam.domain.enums import Role
from tests.auth import PASSWORD, add_user, assert_error, bearer, login


async def entries(client: Any, headers: dict[str, str], **query: Any) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/audit", params={"limit": 200, **query}, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_security_events_are_recorded(
    database_url: str, make_auth_client: Callable[..., Any]
) -> None:
    async with make_auth_client(database_url=database_url) as (app, client):
        admin = await add_user(app, Role.ADMIN, "root")
        admin_headers = bearer((await login(client, "root"))["access_token"])

        created = await client.post(
            "/api/v1/users",
            json={"username": "ada", "password": PASSWORD, "role": "developer"},
            headers={**admin_headers, "X-Request-ID": "create-ada"},
        )
        ada_id = created.json()["id"]
        await client.patch(
            f"/api/v1/users/{ada_id}", json={"role": "viewer"}, headers=admin_headers
        )
        failed = await client.post(
            "/api/v1/auth/token",
            data={"username": "ada", "password": "wrong password"},
            headers={"X-Request-ID": "bad-login"},
        )
        await client.post(
            "/api/v1/auth/token", data={"username": "ghost", "password": "wrong password"}
        )
        tokens = await login(client, "ada")
        second = (
            await client.post(
                "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
            )
        ).json()
        await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        fresh = await login(client, "ada")
        await client.post("/api/v1/auth/logout", headers=bearer(fresh["access_token"]))

        log = list(reversed(await entries(client, admin_headers)))
    assert failed.status_code == 401
    assert second["access_token"]
    summary = [(e["action"], e["outcome"], e["actor"]) for e in log]
    assert summary == [
        ("user.create", "success", "test"),  # root, made by the test helper
        ("auth.login", "success", "root"),
        ("user.create", "success", "root"),
        ("user.role_change", "success", "root"),
        ("auth.login", "failure", "ada"),
        ("auth.login", "failure", "ghost"),
        ("auth.login", "success", "ada"),
        ("auth.refresh", "success", "ada"),
        ("auth.token_reuse", "denied", "ada"),
        ("auth.login", "success", "ada"),
        ("auth.logout", "success", "ada"),
    ]
    by_request = {e["request_id"]: e for e in log}
    create = by_request["create-ada"]
    assert create["actor_id"] == str(admin.id)
    assert create["resource_type"] == "user"
    assert create["resource_id"] == ada_id
    assert create["details"] == {"username": "ada", "role": "developer"}
    assert create["client_ip"] == "127.0.0.1"
    assert create["ts"].endswith("Z")
    bad = by_request["bad-login"]
    assert bad["details"] == {"reason": "wrong password"}
    assert bad["actor_id"] == ada_id
    role_change = next(e for e in log if e["action"] == "user.role_change")
    assert role_change["details"] == {"username": "ada", "from": "developer", "to": "viewer"}
    ghost = next(e for e in log if e["actor"] == "ghost")
    assert ghost["actor_id"] is None
    assert ghost["details"] == {"reason": "unknown user"}
    reuse = next(e for e in log if e["action"] == "auth.token_reuse")
    assert reuse["resource_type"] == "session"
    assert all(e["request_id"] for e in log[1:])


async def test_filters_and_cursor_pagination(make_auth_client: Callable[..., Any]) -> None:
    async with make_auth_client() as (app, client):
        await add_user(app, Role.ADMIN, "root")
        headers = bearer((await login(client, "root"))["access_token"])
        for n in range(5):
            await client.post(
                "/api/v1/auth/token", data={"username": f"ghost{n}", "password": "wrong"}
            )
        pages, cursor = [], None
        while True:
            params: dict[str, Any] = {"action": "auth.login", "limit": 2}
            if cursor:
                params["cursor"] = cursor
            response = await client.get("/api/v1/audit", params=params, headers=headers)
            body = response.json()
            pages.append([e["actor"] for e in body["items"]])
            cursor = body["next_cursor"]
            if cursor is None:
                break
        by_actor = await entries(client, headers, actor="ghost3")
        bad_cursor = await client.get("/api/v1/audit?cursor=bm90IGpzb24", headers=headers)
        too_many = await client.get("/api/v1/audit?limit=1000", headers=headers)
    # Newest first, every login attempt exactly once across pages.
    assert pages == [["ghost4", "ghost3"], ["ghost2", "ghost1"], ["ghost0", "root"]]
    assert [(e["actor"], e["action"]) for e in by_actor] == [("ghost3", "auth.login")]
    assert_error(bad_cursor, 422, "validation_error")
    assert bad_cursor.json()["error"]["details"][0]["field"] == "cursor"
    assert_error(too_many, 422, "validation_error")


async def test_audit_log_is_admin_only(make_auth_client: Callable[..., Any]) -> None:
    async with make_auth_client() as (app, client):
        operator = await add_user(app, Role.OPERATOR)
        headers = bearer((await login(client, operator.username))["access_token"])
        response = await client.get("/api/v1/audit", headers=headers)
    assert_error(response, 403, "forbidden")
    assert response.json()["error"]["message"] == "this needs the audit:read permission"
