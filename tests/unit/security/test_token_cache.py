"""Access tokens verified once are remembered, but never past their expiry."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devteam.domain.errors import TokenExpired, Unauthorized
from devteam.security.token_cache import VerifiedTokens
from devteam.security.tokens import TokenClaims, TokenCodec, TokenType, load_signing_keys
from devteam.settings import Settings
from devteam.settings.security import TokensConfig

SECRET = "s" * 32


class CountingCodec(TokenCodec):
    """The real codec, counting the tokens it checks in full."""

    decoded = 0

    def decode(self, token: str, token_type: TokenType) -> TokenClaims:
        self.decoded += 1
        return super().decode(token, token_type)


def make_codec(**config: Any) -> CountingCodec:
    settings = Settings(_env_file=None, jwt_secret=SECRET)  # type: ignore[call-arg]
    tokens = TokensConfig(**config)
    return CountingCodec(load_signing_keys(settings, tokens), tokens)


def access_token(codec: TokenCodec, *, issued: datetime | None = None) -> str:
    return codec.issue(
        TokenType.ACCESS, subject=uuid.uuid4(), session_id=uuid.uuid4(), now=issued
    ).token


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_token_is_checked_once_then_remembered() -> None:
    codec = make_codec()
    verified = VerifiedTokens(codec)
    token = access_token(codec)
    first = verified.access_claims(token)
    assert verified.access_claims(token) == first
    assert first.type is TokenType.ACCESS
    assert codec.decoded == 1


def test_a_remembered_token_is_checked_again_after_the_ttl() -> None:
    codec, clock = make_codec(), Clock()
    verified = VerifiedTokens(codec, ttl_s=30, clock=clock)
    token = access_token(codec)
    verified.access_claims(token)
    clock.now += 29
    verified.access_claims(token)
    assert codec.decoded == 1
    clock.now += 2
    verified.access_claims(token)
    assert codec.decoded == 2


def test_a_token_is_never_taken_from_memory_past_its_expiry() -> None:
    codec, clock = make_codec(access_ttl_s=60, leeway_s=10), Clock()
    verified = VerifiedTokens(codec, ttl_s=3600, clock=clock)
    # Expires 5 s from now: remembered until then (and the leeway), not for the TTL.
    issued = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=55)
    token = access_token(codec, issued=issued)
    claims = verified.access_claims(token)
    clock.now = claims.expires_at.timestamp() + 10 - 0.5
    verified.access_claims(token)
    assert codec.decoded == 1
    clock.now = claims.expires_at.timestamp() + 10
    verified.access_claims(token)  # checked in full again (still valid by the real clock)
    assert codec.decoded == 2


def test_expired_and_invalid_tokens_are_refused_every_time() -> None:
    codec = make_codec(access_ttl_s=60)
    verified = VerifiedTokens(codec)
    expired = access_token(codec, issued=datetime.now(UTC) - timedelta(hours=1))
    refresh = codec.issue(TokenType.REFRESH, subject=uuid.uuid4(), session_id=uuid.uuid4()).token
    # One token's header and claims with another's signature.
    forged = access_token(codec).rsplit(".", 1)[0] + "." + access_token(codec).rsplit(".", 1)[1]
    for _ in range(2):
        with pytest.raises(TokenExpired):
            verified.access_claims(expired)
        with pytest.raises(Unauthorized):
            verified.access_claims(refresh)
        with pytest.raises(Unauthorized):
            verified.access_claims(forged)
    assert codec.decoded == 6


def test_memory_is_bounded_oldest_first() -> None:
    codec = make_codec()
    verified = VerifiedTokens(codec, max_entries=2)
    first, second, third = (access_token(codec) for _ in range(3))
    for token in (first, second, third):
        verified.access_claims(token)
    verified.access_claims(third)
    verified.access_claims(second)
    assert codec.decoded == 3
    verified.access_claims(first)
    assert codec.decoded == 4
