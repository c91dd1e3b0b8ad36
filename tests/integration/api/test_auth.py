"""Login, refresh with rotation and reuse detection, logout — on SQLite and Postgres."""

from __future__ import annotations

import asyncio
import hashlib
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx

from devteam.domain.enums import Role
from devteam.security.tokens import TokenType
from devteam.settings.security import PasswordsConfig, RateLimitsConfig
from tests.auth import PASSWORD, add_user, assert_error, bearer, login, security_config


async def test_login_returns_a_token_pair(make_auth_client: Callable[..., Any]) -> None:
    async with make_auth_client() as (app, client):
        user = await add_user(app, Role.DEVELOPER, "ada")
        response = await client.post(
            "/api/v1/auth/token", data={"username": "ada", "password": PASSWORD}
        )
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 900
        assert response.headers["cache-control"] == "no-store"
        me = await client.get("/api/v1/users/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json() == {
        "id": str(user.id),
        "username": "ada",
        "role": "developer",
        "is_active": True,
        "created_at": user.created_at.isoformat().replace("+00:00", "Z"),
    }


async def test_usernames_are_case_insensitive(make_auth_client: Callable[..., Any]) -> None:
    async with make_auth_client() as (app, client):
        await add_user(app, Role.VIEWER, "Grace")
        tokens = await login(client, "  GRACE ")
        me = await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
    assert me.json()["username"] == "grace"


async def test_unknown_user_and_wrong_password_get_the_same_answer(
    make_auth_client: Callable[..., Any],
) -> None:
    async with make_auth_client() as (app, client):
        await add_user(app, Role.DEVELOPER, "ada")
        wrong = await client.post(
            "/api/v1/auth/token", data={"username": "ada", "password": "not the password"}
        )
        unknown = await client.post(
            "/api/v1/auth/token", data={"username": "nobody", "password": "not the password"}
        )
    for response in (wrong, unknown):
        assert_error(response, 401, "invalid_credentials")
        assert response.headers["www-authenticate"] == "Bearer"
    assert without_request_id(wrong) == without_request_id(unknown)
    assert set(wrong.headers) == set(unknown.headers)


def without_request_id(response: httpx.Response) -> dict[str, Any]:
    return {k: v for k, v in response.json()["error"].items() if k != "request_id"}


async def test_unknown_user_costs_as_much_hashing_as_a_wrong_password(
    make_auth_client: Callable[..., Any],
) -> None:
    """Without the dummy hash an unknown user would answer many times faster."""
    # A real cost (~tens of ms a hash) so the hashing dominates everything else.
    costly = PasswordsConfig(time_cost=2, memory_cost_kib=32 * 1024, parallelism=1)
    roomy = RateLimitsConfig(
        login_per_ip="1000/minute",
        login_failures_per_client="1000/minute",
        login_failures_per_username="1000/minute",
    )
    config = security_config(passwords=costly, rate_limits=roomy)
    async with make_auth_client(config=config) as (app, client):
        await add_user(app, Role.DEVELOPER, "ada")

        async def timed(username: str) -> float:
            begin = time.perf_counter()
            response = await client.post(
                "/api/v1/auth/token", data={"username": username, "password": "wrong password"}
            )
            assert response.status_code == 401
            return time.perf_counter() - begin

        wrong, unknown = [], []
        for _ in range(5):
            wrong.append(await timed("ada"))
            unknown.append(await timed("nobody"))
    ratio = statistics.median(unknown) / statistics.median(wrong)
    # Generous bounds for a busy machine; skipping the dummy hash gives about 0.1.
    assert 0.33 < ratio < 3.0, (wrong, unknown)


async def test_deactivated_user_cannot_log_in(make_auth_client: Callable[..., Any]) -> None:
    async with make_auth_client() as (app, client):
        admin = await add_user(app, Role.ADMIN)
        user = await add_user(app, Role.DEVELOPER)
        admin_headers = bearer((await login(client, admin.username))["access_token"])
        user_tokens = await login(client, user.username)
        response = await client.patch(
            f"/api/v1/users/{user.id}", json={"is_active": False}, headers=admin_headers
        )
        assert response.status_code == 200
        assert response.json()["is_active"] is False
        # Sessions end at once: the access token and the refresh token stop working.
        me = await client.get("/api/v1/users/me", headers=bearer(user_tokens["access_token"]))
        refreshed = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": user_tokens["refresh_token"]}
        )
        relogin = await client.post(
            "/api/v1/auth/token", data={"username": user.username, "password": PASSWORD}
        )
    assert_error(me, 401, "unauthorized")
    assert_error(refreshed, 401, "unauthorized")
    assert_error(relogin, 401, "invalid_credentials")


async def test_refresh_rotates(database_url: str, make_auth_client: Callable[..., Any]) -> None:
    async with make_auth_client(database_url=database_url) as (app, client):
        user = await add_user(app)
        first = await login(client, user.username)
        response = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
        )
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        second = response.json()
        assert second["refresh_token"] != first["refresh_token"]
        assert second["access_token"] != first["access_token"]
        # The new pair works, and so does the older access token of the same session.
        for token in (second["access_token"], first["access_token"]):
            me = await client.get("/api/v1/users/me", headers=bearer(token))
            assert me.status_code == 200
        third = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
        )
        assert third.status_code == 200


async def test_reusing_a_refresh_token_revokes_the_family(
    database_url: str, make_auth_client: Callable[..., Any]
) -> None:
    async with make_auth_client(database_url=database_url) as (app, client):
        user = await add_user(app)
        first = await login(client, user.username)
        other_session = await login(client, user.username)
        second = (
            await client.post(
                "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
            )
        ).json()

        replay = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
        )
        assert_error(replay, 401, "token_reused")

        # The whole family is dead: the newest refresh token and every access token.
        newest = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
        )
        assert_error(newest, 401, "unauthorized")
        for token in (first["access_token"], second["access_token"]):
            me = await client.get("/api/v1/users/me", headers=bearer(token))
            assert_error(me, 401, "unauthorized")
        # Presenting the replayed token again is still reuse.
        again = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
        )
        assert_error(again, 401, "token_reused")

        # Another session of the same user is untouched.
        me = await client.get("/api/v1/users/me", headers=bearer(other_session["access_token"]))
        assert me.status_code == 200


async def test_concurrent_refreshes_of_one_token_one_wins(
    database_url: str, make_auth_client: Callable[..., Any]
) -> None:
    async with make_auth_client(database_url=database_url) as (app, client):
        user = await add_user(app)
        tokens = await login(client, user.username)

        async def refresh() -> httpx.Response:
            return await client.post(
                "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
            )

        responses = await asyncio.gather(*(refresh() for _ in range(6)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200, 401, 401, 401, 401, 401], [r.text for r in responses]
        for response in responses:
            if response.status_code == 401:
                assert_error(response, 401, "token_reused")
        # Reuse was detected, so the session ended, the winner's new tokens included.
        winner = next(r.json() for r in responses if r.status_code == 200)
        after = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": winner["refresh_token"]}
        )
        assert_error(after, 401, "unauthorized")


async def test_logout_ends_the_session(
    database_url: str, make_auth_client: Callable[..., Any]
) -> None:
    async with make_auth_client(database_url=database_url) as (app, client):
        user = await add_user(app)
        tokens = await login(client, user.username)
        kept = await login(client, user.username)
        response = await client.post("/api/v1/auth/logout", headers=bearer(tokens["access_token"]))
        assert response.status_code == 204
        assert response.content == b""
        me = await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
        assert_error(me, 401, "unauthorized")
        refreshed = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert_error(refreshed, 401, "unauthorized")
        # Logging out one session leaves the user's other sessions alone.
        other = await client.get("/api/v1/users/me", headers=bearer(kept["access_token"]))
        assert other.status_code == 200


async def test_refresh_tokens_are_stored_hashed(
    database_url: str, make_auth_client: Callable[..., Any]
) -> None:
    async with make_auth_client(database_url=database_url) as (app, client):
        user = await add_user(app)
        tokens = await login(client, user.username)
        security = app.state.services.security
        claims = security.tokens.decode(tokens["refresh_token"], TokenType.REFRESH)
        store = app.state.services.store
        async with store.read() as tx:
            assert await tx.refresh_tokens.get_by_jti_hash(claims.token_id) is None
            record = await tx.refresh_tokens.get_by_jti_hash(
                hashlib.sha256(claims.token_id.encode()).hexdigest()
            )
    assert record is not None
    assert record.user_id == user.id
    assert record.family_id == claims.session_id


async def test_role_change_applies_to_the_next_request(
    make_auth_client: Callable[..., Any],
) -> None:
    async with make_auth_client() as (app, client):
        admin = await add_user(app, Role.ADMIN)
        user = await add_user(app, Role.DEVELOPER)
        admin_headers = bearer((await login(client, admin.username))["access_token"])
        user_headers = bearer((await login(client, user.username))["access_token"])
        assert (await client.get("/api/v1/users", headers=user_headers)).status_code == 403
        promoted = await client.patch(
            f"/api/v1/users/{user.id}", json={"role": "admin"}, headers=admin_headers
        )
        assert promoted.json()["role"] == "admin"
        # Same access token, new role.
        assert (await client.get("/api/v1/users", headers=user_headers)).status_code == 200


async def test_password_hash_is_upgraded_at_login(
    make_auth_client: Callable[..., Any], sqlite_url: str
) -> None:
    old = PasswordsConfig(time_cost=1, memory_cost_kib=8, parallelism=1)
    new = PasswordsConfig(time_cost=2, memory_cost_kib=16, parallelism=1)
    async with make_auth_client(config=security_config(passwords=old), database_url=sqlite_url) as (
        app,
        _,
    ):
        await add_user(app, Role.VIEWER, "ada")
    async with make_auth_client(config=security_config(passwords=new), database_url=sqlite_url) as (
        app,
        client,
    ):
        await login(client, "ada")
        async with app.state.services.store.read() as tx:
            stored = await tx.users.get_with_secret("ada")
    assert stored is not None
    assert "m=16,t=2,p=1" in stored.password_hash
