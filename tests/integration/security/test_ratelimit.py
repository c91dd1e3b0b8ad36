"""Moving-window rate limits in the broker's storage: in-process and on a real Redis."""

from __future__ import annotations

import pytest

from devteam.broker.protocol import Broker
from devteam.broker.redis import RedisBroker
from devteam.domain.errors import RateLimited
from devteam.observability.metrics import RATE_LIMIT_REJECTIONS
from devteam.security.ratelimit import RateLimiter, RateLimitScope
from devteam.settings.security import RateLimitsConfig

LIMITS = RateLimitsConfig(
    api_per_user="3/minute",
    login_per_ip="2/minute",
    login_per_username="5/second;2/minute",
    ws_connect_per_user="1/minute",
)


def rejections(scope: RateLimitScope) -> float:
    return RATE_LIMIT_REJECTIONS.labels(scope=scope.value)._value.get()


async def test_counts_down_then_refuses(broker: Broker) -> None:
    limiter = RateLimiter(broker.rate_limit_storage(), LIMITS)
    remaining = [(await limiter.hit(RateLimitScope.API, "u1")).remaining for _ in range(3)]
    assert remaining == [2, 1, 0]
    before = rejections(RateLimitScope.API)
    with pytest.raises(RateLimited) as caught:
        await limiter.hit(RateLimitScope.API, "u1")
    error = caught.value
    assert error.status_code == 429
    assert error.code == "rate_limited"
    headers = error.headers
    assert headers["RateLimit-Limit"] == "3"
    assert headers["RateLimit-Remaining"] == "0"
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert 0 <= int(headers["RateLimit-Reset"]) <= 60
    assert headers["RateLimit-Policy"] == "3;w=60"
    assert rejections(RateLimitScope.API) == before + 1


async def test_keys_and_scopes_are_separate(broker: Broker) -> None:
    limiter = RateLimiter(broker.rate_limit_storage(), LIMITS)
    await limiter.hit(RateLimitScope.WS_CONNECT, "u1")
    with pytest.raises(RateLimited):
        await limiter.hit(RateLimitScope.WS_CONNECT, "u1")
    # Another user, and another scope of the same user, have their own windows.
    assert (await limiter.hit(RateLimitScope.WS_CONNECT, "u2")).remaining == 0
    assert (await limiter.hit(RateLimitScope.API, "u1")).remaining == 2


async def test_every_limit_of_a_scope_applies(broker: Broker) -> None:
    limiter = RateLimiter(broker.rate_limit_storage(), LIMITS)
    first = await limiter.hit(RateLimitScope.LOGIN_USERNAME, "ada")
    # The tightest window is reported: 1 left of 2 per minute (not 4 of 5 per second).
    assert (first.limit, first.remaining) == (2, 1)
    await limiter.hit(RateLimitScope.LOGIN_USERNAME, "ada")
    with pytest.raises(RateLimited) as caught:
        await limiter.hit(RateLimitScope.LOGIN_USERNAME, "ada")
    assert "at most 2 per minute" in caught.value.message


@pytest.mark.redis
async def test_processes_share_one_window_on_redis(redis_url: str, redis_prefix: str) -> None:
    first, second = (
        RedisBroker(redis_url, prefix=redis_prefix),
        RedisBroker(redis_url, prefix=redis_prefix),
    )
    try:
        a = RateLimiter(first.rate_limit_storage(), LIMITS)
        b = RateLimiter(second.rate_limit_storage(), LIMITS)
        await a.hit(RateLimitScope.API, "u1")
        await b.hit(RateLimitScope.API, "u1")
        assert (await a.hit(RateLimitScope.API, "u1")).remaining == 0
        with pytest.raises(RateLimited):
            await b.hit(RateLimitScope.API, "u1")
        # Another deployment prefix counts on its own.
        other = RedisBroker(redis_url, prefix=f"{redis_prefix}:other")  # cleaned up with it
        try:
            c = RateLimiter(other.rate_limit_storage(), LIMITS)
            assert (await c.hit(RateLimitScope.API, "u1")).remaining == 2
        finally:
            await other.close()
    finally:
        await first.close()
        await second.close()
