"""A session revoked on one `devteam serve` stops working on another within a second.

Two API processes on one Postgres and one Redis, each caching live sessions for
a minute: the cache is forgotten through Redis pub/sub, not by its expiry.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import httpx
import jwt
import pytest
import yaml

from devteam.domain.enums import Role
from devteam.security.accounts import Accounts
from devteam.security.audit import Auditor
from devteam.security.passwords import Passwords
from devteam.storage import Database, Store
from tests import servers
from tests.auth import FAST_PASSWORDS, JWT_SECRET, PASSWORD
from tests.processes import REPO, Process, clean_env

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

CACHE_TTL_S = 60
WITHIN_S = 1.0


@pytest.fixture
def pair(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> Iterator[tuple[Process, Process]]:
    servers.truncate_postgres(postgres_url)
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    security = yaml.safe_load((config / "security.yaml").read_text())
    security["session_cache_ttl_s"] = CACHE_TTL_S
    (config / "security.yaml").write_text(yaml.safe_dump(security))
    env = clean_env(
        DEVTEAM_CONFIG_DIR=str(config),
        DEVTEAM_DATABASE_URL=postgres_url,
        DEVTEAM_REDIS_URL=redis_url,
        DEVTEAM_REDIS_PREFIX=redis_prefix,
        DEVTEAM_JWT_SECRET=JWT_SECRET,
        DEVTEAM_MIGRATE_ON_START="false",
        DEVTEAM_WORKSPACES_ROOT=str(tmp_path / "workspaces"),
        DEVTEAM_LOG_LEVEL="WARNING",
    )
    one = Process("one", ["serve", "--no-executors"], env, tmp_path / "one.log")
    two = Process("two", ["serve", "--no-executors"], env, tmp_path / "two.log")
    try:
        one.wait_ready()
        two.wait_ready()
        yield one, two
    finally:
        for process in (one, two):
            process.stop()


async def create_users(url: str) -> None:
    store = Store(Database(url))
    try:
        accounts = Accounts(store, Passwords(FAST_PASSWORDS))
        for name, role in (("root", Role.ADMIN), ("ada", Role.DEVELOPER)):
            await accounts.create(name, PASSWORD, role, auditor=Auditor(store), actor="test")
    finally:
        await store.close()


async def revoke_quietly(url: str, session_id: UUID) -> None:
    """Revoke a session in the database only, announcing nothing."""
    store = Store(Database(url))
    try:
        async with store.transaction() as tx:
            await tx.refresh_tokens.revoke_family(session_id)
    finally:
        await store.close()


async def login(http: httpx.AsyncClient, username: str) -> dict[str, str]:
    response = await http.post(
        "/api/v1/auth/token", data={"username": username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def session_of(headers: dict[str, str]) -> UUID:
    token = headers["Authorization"].removeprefix("Bearer ")
    return UUID(jwt.decode(token, options={"verify_signature": False})["sid"])


async def refused_within(http: httpx.AsyncClient, headers: dict[str, str]) -> float:
    """Seconds until `GET /users/me` with `headers` answers 401 (fails after `WITHIN_S`)."""
    start = time.monotonic()
    while True:
        status = (await http.get("/api/v1/users/me", headers=headers)).status_code
        elapsed = time.monotonic() - start
        if status == 401:
            return elapsed
        assert status == 200
        assert elapsed < WITHIN_S, f"still accepted after {elapsed:.2f} s"
        await asyncio.sleep(0.02)


async def test_a_session_revoked_on_one_process_is_refused_by_the_other_within_a_second(
    pair: tuple[Process, Process], postgres_url: str
) -> None:
    one, two = pair
    await create_users(postgres_url)
    async with (
        httpx.AsyncClient(base_url=one.url, timeout=30) as on_one,
        httpx.AsyncClient(base_url=two.url, timeout=30) as on_two,
    ):
        admin = await login(on_one, "root")
        first, second = await login(on_one, "ada"), await login(on_one, "ada")
        for headers in (first, second):
            assert (await on_two.get("/api/v1/users/me", headers=headers)).status_code == 200
        # Process two answers from its cache: a revocation nobody announces goes unseen.
        await revoke_quietly(postgres_url, session_of(second))
        assert (await on_two.get("/api/v1/users/me", headers=second)).status_code == 200

        # Logging out on one reaches two at once.
        out = await on_one.post("/api/v1/auth/logout", headers=first)
        assert out.status_code == 204
        await refused_within(on_two, first)
        assert (await on_two.get("/api/v1/users/me", headers=second)).status_code == 200

        # So does a deactivation: every session of the user is forgotten.
        ada = (await on_one.get("/api/v1/users/me", headers=second)).json()
        assert ada == {"error": ada["error"]}  # process one never cached it: refused
        users = (await on_one.get("/api/v1/users", headers=admin)).json()["items"]
        ada_id = next(u["id"] for u in users if u["username"] == "ada")
        changed = await on_one.patch(
            f"/api/v1/users/{ada_id}", json={"is_active": False}, headers=admin
        )
        assert changed.status_code == 200, changed.text
        await refused_within(on_two, second)
