"""Single sign-on against a real OpenID provider (`oidc-provider` on loopback).

Tokens come from the provider's own flows (authorization code with PKCE); the
attacks are tokens the provider never issued, some signed with its real key.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt
import pytest
import websockets
from cryptography.hazmat.primitives import serialization

from devteam.domain.enums import Role
from devteam.domain.errors import ConfigError
from devteam.security.oidc import effective_config, role_for
from devteam.settings import Settings
from devteam.settings.security import OidcConfig
from tests.auth import assert_error, security_config
from tests.live import LiveServer
from tests.oidc import AUDIENCE, OidcProviders, Provider, new_key

pytestmark = pytest.mark.slow

ROLE_MAP = {
    "devteam-admins": "admin",
    "devteam-operators": "operator",
    "devteam-devs": "developer",
    "devteam-viewers": "viewer",
}


@pytest.fixture(scope="module")
def providers() -> Iterator[OidcProviders]:
    """Two providers in one process: the first offers the device flow, the second not."""
    with OidcProviders.start(True, False) as running:
        yield running


@pytest.fixture
def idp(providers: OidcProviders) -> Provider:
    return providers[0]


@pytest.fixture
def sso_server(make_live_server: Callable[..., Any], idp: Provider) -> Callable[..., Any]:
    """`async with sso_server(**oidc) as server`: a live server trusting `idp`."""

    @asynccontextmanager
    async def make(**oidc: Any) -> AsyncIterator[LiveServer]:
        config = security_config()
        tuned = config.security.oidc.model_copy(update={"jwks_refresh_interval_s": 0.2, **oidc})
        config = config.model_copy(
            update={"security": config.security.model_copy(update={"oidc": tuned})}
        )
        async with make_live_server(
            config,
            oidc_issuer=idp.issuer,
            oidc_audience=oidc.get("audience", AUDIENCE),
            oidc_role_map=ROLE_MAP,
            oidc_allow_http=True,
            oidc_client_id="devteam-cli",
        ) as server:
            yield server

    return make


def unique(prefix: str) -> str:
    return f"{prefix}-{time.monotonic_ns() % 10**9}"


async def me(server: LiveServer, token: str) -> httpx.Response:
    async with server.http(token) as http:
        return await http.get("/api/v1/users/me")


async def audit_actions(server: LiveServer, username: str) -> list[tuple[str, str, dict[str, Any]]]:
    async with server.services.store.read() as tx:
        entries = await tx.audit.list(actor=username, limit=100)
    return [(e.action, e.outcome, e.details) for e in entries]


async def test_a_provider_token_creates_the_user_with_the_role_of_their_group(
    sso_server: Callable[..., Any], idp: Provider
) -> None:
    sub = unique("alice")
    idp.account(sub, groups=["devteam-devs", "unrelated"])
    tokens = idp.code_flow_token(sub)
    async with sso_server() as server:
        response = await me(server, tokens["access_token"])
        assert response.status_code == 200, response.text
        assert response.json()["username"] == sub
        assert response.json()["role"] == "developer"
        # The same user again, not a second one.
        again = await me(server, idp.code_flow_token(sub)["access_token"])
        assert again.json()["id"] == response.json()["id"]
        # A developer may submit tasks with the provider's token.
        async with server.http(tokens["access_token"]) as http:
            submitted = await http.post(
                "/api/v1/tasks", json={"task": "Explain the repository layout", "complexity": 1}
            )
        assert submitted.status_code == 202, submitted.text
        actions = await audit_actions(server, sub)
    assert ("user.create", "success") in [(a, o) for a, o, _ in actions]
    sign_ins = [d for a, o, d in actions if a == "auth.login" and o == "success"]
    assert len(sign_ins) == 2  # one per token, not per request
    assert all(d["method"] == "oidc" for d in sign_ins)


async def test_the_highest_role_wins_and_a_group_change_applies_with_the_next_token(
    sso_server: Callable[..., Any], idp: Provider
) -> None:
    sub = unique("bob")
    idp.account(sub, groups=["devteam-viewers", "devteam-operators"])
    async with sso_server() as server:
        first = await me(server, idp.code_flow_token(sub)["access_token"])
        assert first.json()["role"] == "operator"
        idp.account(sub, groups=["devteam-viewers"])
        second = await me(server, idp.code_flow_token(sub)["access_token"])
        assert second.json()["role"] == "viewer"
        actions = await audit_actions(server, sub)
    changes = [d for a, _, d in actions if a == "user.role_change"]
    assert changes == [
        {"method": "oidc", "from": "operator", "to": "viewer", "groups": ["devteam-viewers"]}
    ]


async def test_a_user_in_no_mapped_group_is_refused_and_not_created(
    sso_server: Callable[..., Any], idp: Provider
) -> None:
    sub = unique("carol")
    idp.account(sub, groups=["marketing"])
    async with sso_server() as server:
        response = await me(server, idp.code_flow_token(sub)["access_token"])
        assert_error(response, 403, "forbidden")
        assert "no group" in response.json()["error"]["message"]
        async with server.services.store.read() as tx:
            users = await tx.users.list(limit=100)
        assert sub not in {u.username for u in users}
        actions = await audit_actions(server, sub)
    assert [(a, o) for a, o, _ in actions] == [("auth.login", "denied")]


async def test_a_locally_deactivated_user_stays_out(
    sso_server: Callable[..., Any], idp: Provider
) -> None:
    sub = unique("dave")
    idp.account(sub, groups=["devteam-devs"])
    async with sso_server() as server:
        created = await me(server, idp.code_flow_token(sub)["access_token"])
        assert created.status_code == 200
        security = server.services.security
        assert security is not None
        from uuid import UUID

        await security.accounts.update(
            UUID(created.json()["id"]), is_active=False, auditor=security.auditor, actor="test"
        )
        response = await me(server, idp.code_flow_token(sub)["access_token"])
        assert_error(response, 403, "forbidden")


async def test_id_tokens_where_the_providers_access_tokens_are_opaque(
    sso_server: Callable[..., Any], idp: Provider
) -> None:
    """Google's access tokens are not JWTs: there the ID token (aud = the client) is sent."""
    sub = unique("ivan")
    idp.account(sub, groups=["devteam-operators"])
    tokens = idp.code_flow_token(sub)
    async with sso_server(token_type="id_token", audience="devteam-cli") as server:
        response = await me(server, tokens["id_token"])
        assert response.status_code == 200, response.text
        assert response.json()["role"] == "operator"
        # The access token is for another audience (the API), so it does not pass here.
        assert (await me(server, tokens["access_token"])).status_code == 401


async def test_local_tokens_keep_working_beside_the_provider(
    sso_server: Callable[..., Any],
) -> None:
    async with sso_server() as server:
        _, token = await server.login_new_user(Role.DEVELOPER)
        assert (await me(server, token)).status_code == 200


async def test_the_service_names_its_identity_provider_for_clients(
    sso_server: Callable[..., Any], make_live_server: Callable[..., Any], idp: Provider
) -> None:
    async with sso_server() as server, server.http() as http:
        body = (await http.get("/api/v1/auth/providers")).json()
    assert body == {
        "password": True,
        "identity_provider": {
            "issuer": idp.issuer,
            "client_id": "devteam-cli",
            "audience": AUDIENCE,
            "scopes": "openid profile email offline_access",
            "token_type": "access_token",
            "authorization_endpoint": f"{idp.issuer}/auth",
        },
    }
    async with make_live_server() as plain, plain.http() as http:
        assert (await http.get("/api/v1/auth/providers")).json() == {
            "password": True,
            "identity_provider": None,
        }


async def test_a_websocket_accepts_a_provider_token(
    sso_server: Callable[..., Any], idp: Provider
) -> None:
    sub = unique("erin")
    idp.account(sub, groups=["devteam-devs"])
    token = idp.code_flow_token(sub)["access_token"]
    async with sso_server() as server, server.websocket(token) as socket:
        await socket.send(json.dumps({"type": "ping"}))
        assert json.loads(await socket.recv()) == {"type": "pong"}


async def test_a_websocket_of_a_user_with_no_role_closes_with_4403(
    sso_server: Callable[..., Any], idp: Provider
) -> None:
    sub = unique("frank")
    idp.account(sub, groups=["nobody"])
    token = idp.code_flow_token(sub)["access_token"]
    async with sso_server() as server:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with server.websocket(token) as socket:
                await socket.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


def _public_pem(provider: Provider) -> bytes:
    return provider.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _forge_hs256_with_public_key(provider: Provider) -> str:
    """The classic confusion attack: HMAC "signed" with the provider's public key."""
    header = {"alg": "HS256", "typ": "at+jwt", "kid": provider.kid}
    now = int(time.time())
    claims = {"iss": provider.issuer, "aud": AUDIENCE, "sub": "alice", "exp": now + 300}
    # PyJWT refuses PEM keys as HMAC secrets, as it should; an attacker does it by hand.
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(_public_pem(provider), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def _alg_none(provider: Provider) -> str:
    now = int(time.time())
    claims = {"iss": provider.issuer, "aud": AUDIENCE, "sub": "alice", "exp": now + 300}
    return jwt.encode(claims, key=None, algorithm="none", headers={"kid": provider.kid})


ATTACKS: dict[str, Callable[[OidcProviders], str]] = {
    "wrong audience": lambda p: p[0].code_flow_token("mallory", resource="https://other.test/api")[
        "access_token"
    ],
    "wrong issuer": lambda p: p[0].sign({"iss": "https://evil.test"}),
    "expired": lambda p: p[0].sign({"exp": int(time.time()) - 3600}),
    "not valid yet": lambda p: p[0].sign({"nbf": int(time.time()) + 3600}),
    "no expiry": lambda p: p[0].sign({"exp": None}),
    "alg none": lambda p: _alg_none(p[0]),
    "unpublished key": lambda p: p[0].sign({}, key=new_key("key-0-1")[0]),
    "unknown kid": lambda p: p[0].sign({}, key=new_key("x")[0], headers={"kid": "not-there"}),
    "hs256 with the public key": lambda p: _forge_hs256_with_public_key(p[0]),
    "second provider": lambda p: p[1].code_flow_token("mallory")["access_token"],
    "second provider claiming the first": lambda p: p[1].sign({"iss": p[0].issuer}),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_forged_and_foreign_tokens_are_refused(
    attack: str, sso_server: Callable[..., Any], providers: OidcProviders
) -> None:
    for provider in providers.providers:
        provider.account("mallory", groups=["devteam-admins"])
    providers[0].account("alice", groups=["devteam-admins"])
    token = ATTACKS[attack](providers)
    async with sso_server() as server:
        response = await me(server, token)
        assert response.status_code == 401, f"{attack}: {response.text}"
        assert response.json()["error"]["code"] in {"unauthorized", "token_expired"}
        async with server.services.store.read() as tx:
            users = await tx.users.list(limit=100)
        assert {"mallory", "alice"}.isdisjoint(u.username for u in users)


async def test_a_valid_token_signed_with_the_providers_key_passes(
    sso_server: Callable[..., Any], idp: Provider
) -> None:
    """The forged-token tests above fail for their flaw alone: the same, unflawed, passes."""
    async with sso_server() as server:
        response = await me(server, idp.sign({"sub": unique("grace"), "groups": ["devteam-devs"]}))
    assert response.status_code == 200, response.text


async def test_a_key_rotation_needs_no_restart(
    sso_server: Callable[..., Any], providers: OidcProviders
) -> None:
    idp = providers[0]
    sub = unique("heidi")
    idp.account(sub, groups=["devteam-devs"])
    async with sso_server() as server:
        before = idp.code_flow_token(sub)["access_token"]
        assert (await me(server, before)).status_code == 200
        old_kid = idp.kid
        providers.rotate_keys(0)
        idp.account(sub, groups=["devteam-devs"])
        after = idp.code_flow_token(sub)["access_token"]
        assert jwt.get_unverified_header(after)["kid"] != old_kid
        await asyncio.sleep(0.3)  # past the refresh interval of this test's config
        response = await me(server, after)
        assert response.status_code == 200, response.text
        # The old key is gone from the provider, so its tokens are refused once keys refresh.
        assert (await me(server, before)).status_code == 401


async def test_an_unreachable_provider_is_a_503(
    make_live_server: Callable[..., Any], idp: Provider
) -> None:
    from tests.oidc import free_port

    issuer = f"http://127.0.0.1:{free_port()}"
    token = idp.sign({"iss": issuer})
    async with make_live_server(
        security_config(),
        oidc_issuer=issuer,
        oidc_audience=AUDIENCE,
        oidc_role_map=ROLE_MAP,
        oidc_allow_http=True,
    ) as server:
        response = await me(server, token)
    assert_error(response, 503, "service_unavailable")


def test_an_http_issuer_needs_allow_http() -> None:
    settings = Settings(_env_file=None, oidc_issuer="http://idp.test", oidc_audience="api")
    with pytest.raises(ConfigError, match="DEVTEAM_OIDC_ALLOW_HTTP"):
        effective_config(settings, OidcConfig())
    allowed = Settings(
        _env_file=None, oidc_issuer="http://idp.test", oidc_audience="api", oidc_allow_http=True
    )
    assert effective_config(allowed, OidcConfig()).issuer == "http://idp.test"


def test_an_issuer_without_an_audience_is_a_config_error() -> None:
    settings = Settings(_env_file=None, oidc_issuer="https://idp.test")
    with pytest.raises(ConfigError, match="audience"):
        effective_config(settings, OidcConfig())


def test_the_environment_overrides_the_yaml_and_roles_rank() -> None:
    settings = Settings(_env_file=None, oidc_role_map={"eng": "developer", "ops": "operator"})
    config = effective_config(
        settings, OidcConfig(issuer="https://idp.test", audience="api", role_map={"x": Role.ADMIN})
    )
    assert config.role_map == {"eng": Role.DEVELOPER, "ops": Role.OPERATOR}
    assert role_for(["eng", "ops", "other"], config.role_map) is Role.OPERATOR
    assert role_for(["other"], config.role_map) is None
