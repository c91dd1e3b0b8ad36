"""Moving-window rate limits in the broker's storage: in-process and on a real Redis,
and what they do when that Redis hangs or dies."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from devteam.broker.protocol import Broker
from devteam.broker.redis import RedisBroker
from devteam.domain.errors import RateLimited, ServiceUnavailable
from devteam.observability.metrics import RATE_LIMIT_REJECTIONS, RATE_LIMIT_UNAVAILABLE
from devteam.security.ratelimit import RECHECK_AFTER_S, RateLimiter, RateLimitScope
from devteam.settings.security import RateLimitsConfig
from tests.own_servers import own_redis

LIMITS = RateLimitsConfig(
    reads_per_user="3/minute",
    writes_per_user="3/minute",
    login_per_ip="2/minute",
    login_failures_per_client="2/minute",
    login_failures_per_username="5/second;2/minute",
    ws_connect_per_user="1/minute",
)


def rejections(scope: RateLimitScope) -> float:
    return RATE_LIMIT_REJECTIONS.labels(scope=scope.value)._value.get()


async def test_counts_down_then_refuses(broker: Broker) -> None:
    limiter = RateLimiter(broker.rate_limit_storage(), LIMITS)
    remaining = []
    for _ in range(3):
        state = await limiter.hit(RateLimitScope.READ, "u1")
        assert state is not None
        remaining.append(state.remaining)
    assert remaining == [2, 1, 0]
    before = rejections(RateLimitScope.READ)
    with pytest.raises(RateLimited) as caught:
        await limiter.hit(RateLimitScope.READ, "u1")
    error = caught.value
    assert error.status_code == 429
    assert error.code == "rate_limited"
    headers = error.headers
    assert headers["RateLimit-Limit"] == "3"
    assert headers["RateLimit-Remaining"] == "0"
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert 0 <= int(headers["RateLimit-Reset"]) <= 60
    assert headers["RateLimit-Policy"] == "3;w=60"
    assert rejections(RateLimitScope.READ) == before + 1


async def test_keys_and_scopes_are_separate(broker: Broker) -> None:
    limiter = RateLimiter(broker.rate_limit_storage(), LIMITS)
    await limiter.hit(RateLimitScope.WS_CONNECT, "u1")
    with pytest.raises(RateLimited):
        await limiter.hit(RateLimitScope.WS_CONNECT, "u1")
    # Another user, and another scope of the same user, have their own windows.
    assert (await limiter.hit(RateLimitScope.WS_CONNECT, "u2")).remaining == 0
    assert (await limiter.hit(RateLimitScope.READ, "u1")).remaining == 2


async def test_every_limit_of_a_scope_applies(broker: Broker) -> None:
    limiter = RateLimiter(broker.rate_limit_storage(), LIMITS)
    first = await limiter.hit(RateLimitScope.LOGIN_FAILURES_USERNAME, "ada")
    # The tightest window is reported: 1 left of 2 per minute (not 4 of 5 per second).
    assert (first.limit, first.remaining) == (2, 1)
    await limiter.hit(RateLimitScope.LOGIN_FAILURES_USERNAME, "ada")
    with pytest.raises(RateLimited) as caught:
        await limiter.hit(RateLimitScope.LOGIN_FAILURES_USERNAME, "ada")
    assert "at most 2 per minute" in caught.value.message


async def test_scopes_counted_in_turn_stop_at_the_first_that_refuses(broker: Broker) -> None:
    limits = LIMITS.model_copy(update={"task_submissions_per_user": "2/minute"})
    limiter = RateLimiter(broker.rate_limit_storage(), limits)
    in_turn = (RateLimitScope.WRITE, RateLimitScope.TASK_SUBMIT)
    # The tightest of the scopes' windows answers: 1 of 2 submissions left.
    first = await limiter.hit_in_turn(in_turn, "u1")
    assert first is not None and (first.limit, first.remaining) == (2, 1)
    await limiter.hit_in_turn(in_turn, "u1")
    with pytest.raises(RateLimited) as caught:
        await limiter.hit_in_turn(in_turn, "u1")
    assert "at most 2 per minute" in caught.value.message
    # The writes counted all three; their window is now full, so the next request is
    # refused there and counts nothing in the submissions' (still full) window.
    with pytest.raises(RateLimited):
        await limiter.hit(RateLimitScope.WRITE, "u1")
    other = await limiter.hit_in_turn(in_turn, "u2")
    assert other is not None and other.remaining == 1
    # Refused by the writes: the submissions' window is not counted.
    for _ in range(3):
        await limiter.hit(RateLimitScope.WRITE, "u3")
    with pytest.raises(RateLimited) as caught:
        await limiter.hit_in_turn(in_turn, "u3")
    assert "at most 3 per minute" in caught.value.message
    submissions = await limiter.hit(RateLimitScope.TASK_SUBMIT, "u3")
    assert submissions is not None and submissions.remaining == 1


async def test_concurrent_hits_are_counted_one_by_one_in_the_order_they_came(
    broker: Broker,
) -> None:
    # On Redis, hits made while a script is in flight go together in the next one.
    limiter = RateLimiter(broker.rate_limit_storage(), LIMITS)
    jobs = [limiter.hit(RateLimitScope.WRITE, "u1") for _ in range(5)]
    jobs += [limiter.hit(RateLimitScope.LOGIN_FAILURES_USERNAME, "ada") for _ in range(3)]
    jobs.append(limiter.hit(RateLimitScope.WRITE, "u2"))
    outcomes = await asyncio.gather(*jobs, return_exceptions=True)
    writes, logins, other = outcomes[:5], outcomes[5:8], outcomes[8]
    assert [s.remaining for s in writes[:3] if not isinstance(s, BaseException)] == [2, 1, 0]
    assert all(isinstance(e, RateLimited) for e in writes[3:])
    # The tightest window of the scope answers; the third hit finds it full.
    assert [(s.limit, s.remaining) for s in logins[:2] if not isinstance(s, BaseException)] == [
        (2, 1),
        (2, 0),
    ]
    assert isinstance(logins[2], RateLimited)
    assert "at most 2 per minute" in logins[2].message
    assert not isinstance(other, BaseException) and other is not None
    assert other.remaining == 2


@pytest.mark.redis
async def test_processes_share_one_window_on_redis(redis_url: str, redis_prefix: str) -> None:
    first, second = (
        RedisBroker(redis_url, prefix=redis_prefix),
        RedisBroker(redis_url, prefix=redis_prefix),
    )
    try:
        a = RateLimiter(first.rate_limit_storage(), LIMITS)
        b = RateLimiter(second.rate_limit_storage(), LIMITS)
        await a.hit(RateLimitScope.READ, "u1")
        await b.hit(RateLimitScope.READ, "u1")
        assert (await a.hit(RateLimitScope.READ, "u1")).remaining == 0
        with pytest.raises(RateLimited):
            await b.hit(RateLimitScope.READ, "u1")
        # Another deployment prefix counts on its own.
        other = RedisBroker(redis_url, prefix=f"{redis_prefix}:other")  # cleaned up with it
        try:
            c = RateLimiter(other.rate_limit_storage(), LIMITS)
            assert (await c.hit(RateLimitScope.READ, "u1")).remaining == 2
        finally:
            await other.close()
    finally:
        await first.close()
        await second.close()


async def test_check_refuses_without_counting_and_record_counts_without_refusing(
    broker: Broker,
) -> None:
    limiter = RateLimiter(broker.rate_limit_storage(), LIMITS)
    # Checking never uses the budget up.
    for _ in range(5):
        await limiter.check(RateLimitScope.LOGIN_FAILURES_CLIENT, "ada\x00ip")
    await limiter.record(RateLimitScope.LOGIN_FAILURES_CLIENT, "ada\x00ip")
    await limiter.record(RateLimitScope.LOGIN_FAILURES_CLIENT, "ada\x00ip")
    # Recording past the limit refuses nothing; checking now refuses, with its headers.
    await limiter.record(RateLimitScope.LOGIN_FAILURES_CLIENT, "ada\x00ip")
    with pytest.raises(RateLimited) as caught:
        await limiter.check(RateLimitScope.LOGIN_FAILURES_CLIENT, "ada\x00ip")
    assert caught.value.headers["RateLimit-Limit"] == "2"
    assert 1 <= int(caught.value.headers["Retry-After"]) <= 60


def unavailable_count(scope: RateLimitScope, action: str) -> float:
    return RATE_LIMIT_UNAVAILABLE.labels(scope=scope.value, action=action)._value.get()


@pytest.mark.redis
@pytest.mark.parametrize("outage", ["paused", "killed"])
async def test_an_unreachable_storage_fails_reads_open_and_writes_closed_quickly(
    tmp_path: Path, outage: str
) -> None:
    limits = LIMITS.model_copy(update={"storage_timeout_s": 0.5})
    with own_redis(tmp_path) as server:
        broker = RedisBroker(server.url, prefix="outage")
        try:
            limiter = RateLimiter(broker.rate_limit_storage(), limits)
            assert await limiter.hit(RateLimitScope.READ, "u1") is not None
            server.pause() if outage == "paused" else server.kill()
            before = unavailable_count(RateLimitScope.READ, "allowed")
            began = time.monotonic()
            assert await limiter.hit(RateLimitScope.READ, "u1") is None
            assert await limiter.hit(RateLimitScope.WS_CONNECT, "u1") is None
            assert unavailable_count(RateLimitScope.READ, "allowed") == before + 1
            for scope in (RateLimitScope.WRITE, RateLimitScope.LOGIN_IP):
                with pytest.raises(ServiceUnavailable) as caught:
                    await limiter.hit(scope, "u1")
                assert caught.value.headers["Retry-After"] == "5"
            with pytest.raises(ServiceUnavailable):
                await limiter.check(RateLimitScope.LOGIN_FAILURES_CLIENT, "u1")
            # The first check waits for the timeout; the next ones do not wait again.
            assert time.monotonic() - began < 0.5 + 1.0
            if outage == "paused":
                server.resume()
                # Back within the recheck interval (a second) of its return.
                deadline = time.monotonic() + RECHECK_AFTER_S + 2
                while True:
                    try:
                        assert await limiter.hit(RateLimitScope.WRITE, "u1") is not None
                        break
                    except ServiceUnavailable:
                        assert time.monotonic() < deadline
                        await asyncio.sleep(0.1)
        finally:
            if outage == "paused":
                server.resume()
            await broker.close()


@pytest.mark.redis
async def test_hits_waiting_behind_a_script_without_answer_give_up_with_it(
    tmp_path: Path,
) -> None:
    limits = LIMITS.model_copy(update={"storage_timeout_s": 0.5})
    with own_redis(tmp_path) as server:
        broker = RedisBroker(server.url, prefix="outage")
        try:
            limiter = RateLimiter(broker.rate_limit_storage(), limits)
            assert await limiter.hit(RateLimitScope.READ, "u1") is not None
            server.pause()
            began = time.monotonic()
            first = asyncio.create_task(limiter.hit(RateLimitScope.READ, "u1"))
            await asyncio.sleep(0.3)
            # These wait for the script in flight; when it gets no answer, they fail with
            # it instead of waiting for a script of their own.
            later = [
                asyncio.create_task(limiter.hit(RateLimitScope.WRITE, f"u{i}")) for i in range(3)
            ]
            assert await first is None
            for job in later:
                with pytest.raises(ServiceUnavailable):
                    await job
            assert time.monotonic() - began < 0.5 + 0.2
        finally:
            server.resume()
            await broker.close()
