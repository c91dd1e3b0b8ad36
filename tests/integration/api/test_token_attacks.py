"""Forged and misused tokens are refused (RFC 8725): each attack answers 401.

Each forgery starts from the claims of a real login and changes one thing; the
`control` case forges with everything right and must pass, so the forging itself
is known to work and each refusal is down to the one thing changed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from devteam.domain.enums import Role
from tests.auth import JWT_SECRET, add_user, assert_error, bearer, login, security_config

ME = "/api/v1/users/me"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def segment(value: dict[str, Any]) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def unverified_claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def hs256(claims: dict[str, Any], secret: bytes, header: dict[str, Any] | None = None) -> str:
    """Sign by hand (pyjwt refuses some of the keys attackers use)."""
    head = segment(header or {"alg": "HS256", "typ": "at+jwt"})
    body = segment(claims)
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def now() -> int:
    return int(time.time())


def replace(claims: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """`claims` with changes; a value of None removes the claim."""
    updated = {**claims, **changes}
    return {k: v for k, v in updated.items() if v is not None}


def expire(claims: dict[str, Any]) -> dict[str, Any]:
    """Issued two hours ago, expired an hour ago (far beyond the leeway)."""
    return replace(claims, iat=now() - 7200, nbf=now() - 7200, exp=now() - 3600)


SECRET = JWT_SECRET.encode()
ATTACKER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)

# name -> (forge(real claims, other user's id) -> token, expected error code)
ATTACKS: dict[str, tuple[Callable[[dict[str, Any], str], str], str]] = {
    "alg none": (
        lambda c, _: f"{segment({'alg': 'none', 'typ': 'at+jwt'})}.{segment(c)}.",
        "unauthorized",
    ),
    "alg None with a signature": (
        lambda c, _: hs256(c, SECRET, {"alg": "None", "typ": "at+jwt"}),
        "unauthorized",
    ),
    "other algorithm in the header": (
        lambda c, _: hs256(c, SECRET, {"alg": "HS512", "typ": "at+jwt"}),
        "unauthorized",
    ),
    "wrong key": (
        lambda c, _: hs256(c, b"another-secret-that-is-long-enough-too-0123"),
        "unauthorized",
    ),
    "signed with an attacker's RSA key": (
        lambda c, _: jwt.encode(c, ATTACKER_RSA, algorithm="RS256", headers={"typ": "at+jwt"}),
        "unauthorized",
    ),
    "expired": (
        lambda c, _: hs256(
            replace(c, iat=now() - 7200, nbf=now() - 7200, exp=now() - 3600), SECRET
        ),
        "token_expired",
    ),
    "not yet valid": (lambda c, _: hs256(replace(c, nbf=now() + 3600), SECRET), "unauthorized"),
    "issued in the future": (
        lambda c, _: hs256(replace(c, iat=now() + 3600), SECRET),
        "unauthorized",
    ),
    "wrong audience": (lambda c, _: hs256(replace(c, aud="another-api"), SECRET), "unauthorized"),
    "audience list": (
        lambda c, _: hs256(replace(c, aud=[c["aud"], "another-api"]), SECRET),
        "unauthorized",
    ),
    "wrong issuer": (lambda c, _: hs256(replace(c, iss="evil"), SECRET), "unauthorized"),
    "no exp": (lambda c, _: hs256(replace(c, exp=None), SECRET), "unauthorized"),
    "no jti": (lambda c, _: hs256(replace(c, jti=None), SECRET), "unauthorized"),
    "no session": (lambda c, _: hs256(replace(c, sid=None), SECRET), "unauthorized"),
    "no typ header": (lambda c, _: hs256(c, SECRET, {"alg": "HS256"}), "unauthorized"),
    "refresh typ header": (
        lambda c, _: hs256(c, SECRET, {"alg": "HS256", "typ": "refresh+jwt"}),
        "unauthorized",
    ),
    "subject not a uuid": (lambda c, _: hs256(replace(c, sub="admin"), SECRET), "unauthorized"),
    "unknown session": (
        lambda c, _: hs256(replace(c, sid=str(uuid.uuid4())), SECRET),
        "unauthorized",
    ),
    "tampered payload": (lambda c, other: tamper(hs256(c, SECRET), sub=other), "unauthorized"),
    "garbage": (lambda c, _: "not-a-token", "unauthorized"),
}


def tamper(token: str, **changes: Any) -> str:
    """Change claims and keep the original signature."""
    head, body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return f"{head}.{segment({**claims, **changes})}.{signature}"


async def test_control_forgery_is_accepted(make_auth_client: Callable[..., Any]) -> None:
    async with make_auth_client() as (app, client):
        user = await add_user(app)
        claims = unverified_claims((await login(client, user.username))["access_token"])
        response = await client.get(ME, headers=bearer(hs256(claims, SECRET)))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_attack_is_refused(attack: str, make_auth_client: Callable[..., Any]) -> None:
    forge, code = ATTACKS[attack]
    async with make_auth_client() as (app, client):
        user = await add_user(app)
        other = await add_user(app, Role.ADMIN)
        claims = unverified_claims((await login(client, user.username))["access_token"])
        response = await client.get(ME, headers=bearer(forge(claims, str(other.id))))
    assert_error(response, 401, code)
    assert response.headers["www-authenticate"] == "Bearer"


async def test_refresh_token_is_not_an_access_token(make_auth_client: Callable[..., Any]) -> None:
    async with make_auth_client() as (app, client):
        user = await add_user(app)
        tokens = await login(client, user.username)
        response = await client.get(ME, headers=bearer(tokens["refresh_token"]))
    assert_error(response, 401, "unauthorized")


async def test_access_token_is_not_a_refresh_token(make_auth_client: Callable[..., Any]) -> None:
    async with make_auth_client() as (app, client):
        user = await add_user(app)
        tokens = await login(client, user.username)
        response = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["access_token"]}
        )
        # The refresh token still works: the failed attempt did not use it up.
        still = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
    assert_error(response, 401, "unauthorized")
    assert still.status_code == 200


async def test_expired_refresh_token(make_auth_client: Callable[..., Any]) -> None:
    async with make_auth_client() as (app, client):
        user = await add_user(app)
        claims = unverified_claims((await login(client, user.username))["refresh_token"])
        expired = hs256(
            expire(claims),
            SECRET,
            {"alg": "HS256", "typ": "refresh+jwt"},
        )
        response = await client.post("/api/v1/auth/refresh", json={"refresh_token": expired})
    assert_error(response, 401, "token_expired")


async def test_missing_or_other_scheme(make_auth_client: Callable[..., Any]) -> None:
    async with make_auth_client() as (_, client):
        missing = await client.get(ME)
        basic = await client.get(ME, headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
        empty = await client.get(ME, headers={"Authorization": "Bearer "})
    for response in (missing, basic, empty):
        assert_error(response, 401, "unauthorized")


def write_key(path: Path, key: Any) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def public_pem(key: Any) -> bytes:
    return bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


async def test_rs256_tokens_and_hs_rs_confusion(
    make_auth_client: Callable[..., Any], tmp_path: Path
) -> None:
    """With RS256, a token HMAC-signed with the public key (known to all) is refused."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_file = write_key(tmp_path / "jwt.pem", key)
    public_file = tmp_path / "jwt.pub"
    public_file.write_bytes(public_pem(key))
    async with make_auth_client(
        config=security_config(algorithm="RS256"),
        jwt_secret=None,
        jwt_private_key_file=private_file,
        jwt_public_key_file=public_file,
    ) as (app, client):
        user = await add_user(app)
        token = (await login(client, user.username))["access_token"]
        assert jwt.get_unverified_header(token)["alg"] == "RS256"
        ok = await client.get(ME, headers=bearer(token))
        claims = unverified_claims(token)
        confused = hs256(claims, public_pem(key))
        confusion = await client.get(ME, headers=bearer(confused))
        foreign = jwt.encode(claims, ATTACKER_RSA, algorithm="RS256", headers={"typ": "at+jwt"})
        wrong_key = await client.get(ME, headers=bearer(foreign))
    assert ok.status_code == 200
    assert_error(confusion, 401, "unauthorized")
    assert_error(wrong_key, 401, "unauthorized")


async def test_es256_tokens(make_auth_client: Callable[..., Any], tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    async with make_auth_client(
        config=security_config(algorithm="ES256"),
        jwt_secret=None,
        jwt_private_key_file=write_key(tmp_path / "jwt.pem", key),
    ) as (app, client):
        user = await add_user(app)
        tokens = await login(client, user.username)
        me = await client.get(ME, headers=bearer(tokens["access_token"]))
        refreshed = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
    assert jwt.get_unverified_header(tokens["access_token"])["alg"] == "ES256"
    assert me.status_code == 200
    assert refreshed.status_code == 200
