"""Access and refresh tokens: JWTs made and checked following RFC 8725.

- One algorithm, from configuration, is the only one accepted (no `none`, no
  switching between HMAC and public-key algorithms).
- Every token carries `iss`, `aud`, `sub`, `exp`, `iat`, `nbf`, `jti` and `sid`
  (the session, i.e. the refresh-token family), and all of them are required.
- The JOSE header `typ` tells the two kinds apart (`at+jwt` as in RFC 9068 for
  access tokens, `refresh+jwt` for refresh tokens), so neither passes for the other.

Keys: HS256/384/512 sign with `DEVTEAM_JWT_SECRET`, which must be at least as long
as the hash (32/48/64 bytes). In production a missing or short secret stops
start-up; in development a random one is generated (tokens then die with the
process). RS256 and ES256 sign with the PEM private key in
`DEVTEAM_JWT_PRIVATE_KEY_FILE` and verify with `DEVTEAM_JWT_PUBLIC_KEY_FILE` (or
the private key's public half).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any
from uuid import UUID

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from devteam.domain.errors import ConfigError, TokenExpired, Unauthorized
from devteam.observability.logging import get_logger
from devteam.settings import Settings
from devteam.settings.security import TokenAlgorithm, TokensConfig

log = get_logger(__name__)

HMAC_KEY_BYTES: dict[str, int] = {"HS256": 32, "HS384": 48, "HS512": 64}
"""Shortest HMAC secret per algorithm: the hash's output size (RFC 7518, section 3.2)."""

MIN_RSA_BITS = 2048
_REQUIRED_CLAIMS = ["iss", "aud", "sub", "exp", "iat", "nbf", "jti", "sid"]


class TokenType(StrEnum):
    ACCESS = "access"
    REFRESH = "refresh"

    @property
    def jose_type(self) -> str:
        """The `typ` header of this kind of token."""
        return "at+jwt" if self is TokenType.ACCESS else "refresh+jwt"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    type: TokenType
    subject: UUID
    """The user's id (`sub`)."""
    session_id: UUID
    """The refresh-token family this token belongs to (`sid`); logout ends it."""
    token_id: str
    """`jti`: random and unique; refresh tokens are recorded by its hash."""
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    claims: TokenClaims


@dataclass(frozen=True, slots=True)
class SigningKeys:
    algorithm: TokenAlgorithm
    signing_key: Any
    """HMAC secret (bytes) or a private key object."""
    verifying_key: Any
    """HMAC secret (bytes) or a public key object."""
    generated: bool = False
    """True for a development secret made at start-up."""


def hash_token_id(token_id: str) -> str:
    """The form a refresh token's `jti` is stored in: a leaked table yields no token."""
    return hashlib.sha256(token_id.encode()).hexdigest()


def configured_signing_keys(settings: Settings, tokens: TokensConfig) -> SigningKeys | None:
    """The keys the settings name, or None for HMAC in development with no secret set.

    Raises `ConfigError` (one line naming the variable) for anything unusable.
    """
    algorithm = tokens.algorithm
    if algorithm in HMAC_KEY_BYTES:
        return _hmac_keys(settings, algorithm)
    return _public_key_pair(settings, algorithm)


def load_signing_keys(settings: Settings, tokens: TokensConfig) -> SigningKeys:
    """The configured keys; in development, a random HMAC secret when none is set."""
    keys = configured_signing_keys(settings, tokens)
    if keys is not None:
        return keys
    secret = secrets.token_bytes(HMAC_KEY_BYTES[tokens.algorithm])
    log.warning(
        "DEVTEAM_JWT_SECRET is not set: using a random one; tokens stop working when the "
        "process stops (set it, at least 32 bytes, to keep sessions across restarts)"
    )
    return SigningKeys(tokens.algorithm, secret, secret, generated=True)


def _hmac_keys(settings: Settings, algorithm: TokenAlgorithm) -> SigningKeys | None:
    minimum = HMAC_KEY_BYTES[algorithm]
    if settings.jwt_secret is None:
        if settings.is_production:
            raise ConfigError(
                f"environment: DEVTEAM_JWT_SECRET: required in production "
                f"(at least {minimum} bytes, e.g. the output of `openssl rand -base64 48`)"
            )
        return None
    secret = settings.jwt_secret.get_secret_value().encode()
    if len(secret) < minimum:
        raise ConfigError(
            f"environment: DEVTEAM_JWT_SECRET: too short for {algorithm}: "
            f"{len(secret)} bytes, at least {minimum}"
        )
    return SigningKeys(algorithm, secret, secret)


def _public_key_pair(settings: Settings, algorithm: TokenAlgorithm) -> SigningKeys:
    if settings.jwt_private_key_file is None:
        raise ConfigError(
            f"environment: DEVTEAM_JWT_PRIVATE_KEY_FILE: required by tokens.algorithm {algorithm}"
        )
    private_pem = _read_key_file("DEVTEAM_JWT_PRIVATE_KEY_FILE", settings.jwt_private_key_file)
    try:
        private_key = serialization.load_pem_private_key(private_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"environment: DEVTEAM_JWT_PRIVATE_KEY_FILE: not an unencrypted PEM private key "
            f"({settings.jwt_private_key_file}: {type(exc).__name__})"
        ) from None
    if algorithm == "RS256":
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise ConfigError("environment: DEVTEAM_JWT_PRIVATE_KEY_FILE: RS256 needs an RSA key")
        if private_key.key_size < MIN_RSA_BITS:
            raise ConfigError(
                f"environment: DEVTEAM_JWT_PRIVATE_KEY_FILE: RSA key of {private_key.key_size} "
                f"bits, at least {MIN_RSA_BITS}"
            )
    elif not (
        isinstance(private_key, ec.EllipticCurvePrivateKey)
        and isinstance(private_key.curve, ec.SECP256R1)
    ):
        raise ConfigError(
            "environment: DEVTEAM_JWT_PRIVATE_KEY_FILE: ES256 needs an EC key on curve P-256"
        )
    public_key = private_key.public_key()
    if settings.jwt_public_key_file is not None:
        public_pem = _read_key_file("DEVTEAM_JWT_PUBLIC_KEY_FILE", settings.jwt_public_key_file)
        try:
            given = serialization.load_pem_public_key(public_pem)
        except (ValueError, TypeError):
            raise ConfigError(
                f"environment: DEVTEAM_JWT_PUBLIC_KEY_FILE: not a PEM public key "
                f"({settings.jwt_public_key_file})"
            ) from None
        if _spki(given) != _spki(public_key):
            raise ConfigError(
                "environment: DEVTEAM_JWT_PUBLIC_KEY_FILE: not the public half of "
                "DEVTEAM_JWT_PRIVATE_KEY_FILE"
            )
    return SigningKeys(algorithm, private_key, public_key)


def _spki(key: Any) -> bytes:
    return bytes(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _read_key_file(variable: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"environment: {variable}: cannot read {path}: {exc.strerror}") from None


class TokenCodec:
    """Issues and checks tokens with one key set and the configured claims."""

    def __init__(self, keys: SigningKeys, config: TokensConfig) -> None:
        self.keys = keys
        self.config = config
        self._ttl = {
            TokenType.ACCESS: timedelta(seconds=config.access_ttl_s),
            TokenType.REFRESH: timedelta(seconds=config.refresh_ttl_s),
        }

    def issue(
        self,
        token_type: TokenType,
        *,
        subject: UUID,
        session_id: UUID,
        now: datetime | None = None,
    ) -> IssuedToken:
        issued_at = (now or datetime.now(UTC)).replace(microsecond=0)
        claims = TokenClaims(
            type=token_type,
            subject=subject,
            session_id=session_id,
            token_id=secrets.token_urlsafe(24),
            issued_at=issued_at,
            expires_at=issued_at + self._ttl[token_type],
        )
        payload = {
            "iss": self.config.issuer,
            "aud": self.config.audience,
            "sub": str(subject),
            "sid": str(session_id),
            "jti": claims.token_id,
            "iat": issued_at,
            "nbf": issued_at,
            "exp": claims.expires_at,
        }
        token = jwt.encode(
            payload,
            self.keys.signing_key,
            algorithm=self.keys.algorithm,
            headers={"typ": token_type.jose_type},
        )
        return IssuedToken(token, claims)

    def decode(self, token: str, token_type: TokenType) -> TokenClaims:
        """The claims of a valid token of `token_type`.

        Raises `TokenExpired` for an expired token and `Unauthorized` for any other
        problem; the reason is logged, never the token.
        """
        try:
            decoded = jwt.decode_complete(
                token,
                self.keys.verifying_key,
                algorithms=[self.keys.algorithm],
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=self.config.leeway_s,
                options={
                    "require": _REQUIRED_CLAIMS,
                    "strict_aud": True,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired("the token has expired") from None
        except jwt.PyJWTError as exc:
            log.info("token refused", reason=type(exc).__name__, expected=token_type.value)
            raise Unauthorized("invalid token") from None
        header, payload = decoded["header"], decoded["payload"]
        if header.get("typ") != token_type.jose_type:
            log.info("token refused", reason="wrong token type", expected=token_type.value)
            raise Unauthorized("invalid token")
        try:
            return TokenClaims(
                type=token_type,
                subject=uuid.UUID(payload["sub"]),
                session_id=uuid.UUID(payload["sid"]),
                token_id=str(payload["jti"]),
                issued_at=datetime.fromtimestamp(payload["iat"], UTC),
                expires_at=datetime.fromtimestamp(payload["exp"], UTC),
            )
        except (ValueError, TypeError, AttributeError, OverflowError):
            log.info("token refused", reason="malformed claims", expected=token_type.value)
            raise Unauthorized("invalid token") from None
