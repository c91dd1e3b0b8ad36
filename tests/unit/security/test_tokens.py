"""Token keys from the settings, and the claims of issued tokens."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from devteam.domain.errors import ConfigError, TokenExpired, Unauthorized
from devteam.security.tokens import (
    TokenCodec,
    TokenType,
    configured_signing_keys,
    load_signing_keys,
)
from devteam.settings import Settings
from devteam.settings.security import TokensConfig

SECRET = "s" * 32


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def public(key: Any) -> bytes:
    return bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def config_error(call: Callable[[], Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        call()
    message = caught.value.message
    assert "\n" not in message
    return message


def test_production_refuses_a_missing_secret() -> None:
    message = config_error(
        lambda: configured_signing_keys(settings(env="production"), TokensConfig())
    )
    assert message.startswith("environment: DEVTEAM_JWT_SECRET: required in production")


@pytest.mark.parametrize("env", ["production", "development"])
def test_a_short_secret_is_refused(env: str) -> None:
    message = config_error(
        lambda: configured_signing_keys(settings(env=env, jwt_secret="x" * 31), TokensConfig())
    )
    assert message == (
        "environment: DEVTEAM_JWT_SECRET: too short for HS256: 31 bytes, at least 32"
    )


def test_longer_hashes_need_longer_secrets() -> None:
    message = config_error(
        lambda: configured_signing_keys(
            settings(jwt_secret="x" * 40), TokensConfig(algorithm="HS512")
        )
    )
    assert "too short for HS512: 40 bytes, at least 64" in message


def test_development_generates_a_secret_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        first = load_signing_keys(settings(), TokensConfig())
        second = load_signing_keys(settings(), TokensConfig())
    assert first.generated
    assert len(first.signing_key) == 32
    assert first.signing_key != second.signing_key
    assert any("DEVTEAM_JWT_SECRET is not set" in r.getMessage() for r in caplog.records)


def test_a_configured_secret_is_used() -> None:
    keys = load_signing_keys(settings(env="production", jwt_secret=SECRET), TokensConfig())
    assert not keys.generated
    assert keys.signing_key == SECRET.encode()


def test_public_key_algorithms_need_a_private_key_file() -> None:
    message = config_error(
        lambda: configured_signing_keys(settings(), TokensConfig(algorithm="RS256"))
    )
    assert message == (
        "environment: DEVTEAM_JWT_PRIVATE_KEY_FILE: required by tokens.algorithm RS256"
    )


def test_key_file_problems_are_one_line(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    small_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    files = {
        "rsa.pem": pem(rsa_key),
        "other.pub": public(other_rsa),
        "small.pem": pem(small_rsa),
        "ec.pem": pem(ec_key),
        "p384.pem": pem(ec.generate_private_key(ec.SECP384R1())),
        "junk.pem": b"not a key",
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)

    def problem(algorithm: str, private: str, public_file: str | None = None) -> str:
        values: dict[str, Any] = {"jwt_private_key_file": tmp_path / private}
        if public_file:
            values["jwt_public_key_file"] = tmp_path / public_file
        return config_error(
            lambda: configured_signing_keys(
                settings(**values),
                TokensConfig(algorithm=algorithm),  # type: ignore[arg-type]
            )
        )

    assert "RS256 needs an RSA key" in problem("RS256", "ec.pem")
    assert "RSA key of 1024 bits, at least 2048" in problem("RS256", "small.pem")
    assert "ES256 needs an EC key on curve P-256" in problem("ES256", "rsa.pem")
    assert "ES256 needs an EC key on curve P-256" in problem("ES256", "p384.pem")
    assert "not an unencrypted PEM private key" in problem("RS256", "junk.pem")
    assert "cannot read" in problem("RS256", "missing.pem")
    assert "DEVTEAM_JWT_PUBLIC_KEY_FILE: not the public half" in problem(
        "RS256", "rsa.pem", "other.pub"
    )
    assert "DEVTEAM_JWT_PUBLIC_KEY_FILE: not a PEM public key" in problem(
        "RS256", "rsa.pem", "junk.pem"
    )


def codec(**config: Any) -> TokenCodec:
    keys = load_signing_keys(settings(jwt_secret=SECRET), TokensConfig(**config))
    return TokenCodec(keys, TokensConfig(**config))


def test_issued_tokens_carry_every_claim() -> None:
    tokens = codec(access_ttl_s=600, refresh_ttl_s=3600)
    user, session = uuid.uuid4(), uuid.uuid4()
    moment = datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    access = tokens.issue(TokenType.ACCESS, subject=user, session_id=session, now=moment)
    refresh = tokens.issue(TokenType.REFRESH, subject=user, session_id=session, now=moment)
    header = jwt.get_unverified_header(access.token)
    claims = jwt.decode(access.token, options={"verify_signature": False})
    assert header == {"alg": "HS256", "typ": "at+jwt"}
    assert jwt.get_unverified_header(refresh.token)["typ"] == "refresh+jwt"
    start = int(moment.replace(microsecond=0).timestamp())
    assert claims == {
        "iss": "devteam",
        "aud": "devteam-api",
        "sub": str(user),
        "sid": str(session),
        "jti": access.claims.token_id,
        "iat": start,
        "nbf": start,
        "exp": start + 600,
    }
    refresh_claims = jwt.decode(refresh.token, options={"verify_signature": False})
    assert refresh_claims["exp"] == start + 3600
    assert access.claims.token_id != refresh.claims.token_id


def test_decode_round_trip_and_type_check() -> None:
    tokens = codec()
    user, session = uuid.uuid4(), uuid.uuid4()
    access = tokens.issue(TokenType.ACCESS, subject=user, session_id=session)
    claims = tokens.decode(access.token, TokenType.ACCESS)
    assert (claims.subject, claims.session_id, claims.type) == (user, session, TokenType.ACCESS)
    with pytest.raises(Unauthorized):
        tokens.decode(access.token, TokenType.REFRESH)


def test_leeway_tolerates_small_clock_skew() -> None:
    tokens = codec(leeway_s=30, access_ttl_s=60)
    past = datetime.now(UTC) - timedelta(seconds=75)  # expired 15 s ago: within leeway
    token = tokens.issue(TokenType.ACCESS, subject=uuid.uuid4(), session_id=uuid.uuid4(), now=past)
    assert tokens.decode(token.token, TokenType.ACCESS).subject == token.claims.subject
    older = datetime.now(UTC) - timedelta(seconds=120)  # expired 60 s ago: beyond it
    stale = tokens.issue(TokenType.ACCESS, subject=uuid.uuid4(), session_id=uuid.uuid4(), now=older)
    with pytest.raises(TokenExpired):
        tokens.decode(stale.token, TokenType.ACCESS)


def test_other_issuer_configuration_is_refused() -> None:
    ours = codec(issuer="devteam-a")
    theirs = codec(issuer="devteam-b")
    token = theirs.issue(TokenType.ACCESS, subject=uuid.uuid4(), session_id=uuid.uuid4())
    with pytest.raises(Unauthorized):
        ours.decode(token.token, TokenType.ACCESS)
