"""Rate limits: moving windows counted in the broker's storage (Redis or in-process).

With Redis, every process of a deployment counts in the same windows, so a limit
holds however many API replicas there are. Each scope has its own limits from
config/security.yaml (`rate_limits`); a scope may have several ("10/second;500/hour"),
and a request must fit in all of them.

When the storage is slow or down, a check gives up after `storage_timeout_s`: scopes
that only read (API reads, WebSocket connects) fail open — logged and counted in
`devteam_rate_limit_unavailable_total` — and the others (writes, submissions,
logins) are refused with 503 `service_unavailable` and `Retry-After`, so an outage
is a quick answer, never a hung request.

On Redis, counting a request in every window of a scope and reading the windows
back for the `RateLimit-*` headers is one script (the `limits` library would take
two round trips per window); the script keeps the library's list layout and
rules, so `check` and `record` (through the library) see the same windows. Hits
made while a script is in flight wait for it and go together in the next one, in
the order they came: under load, one round trip counts the requests of many
callers, and a hit alone still goes at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar, cast

from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from devteam.domain.errors import RateLimited, ServiceUnavailable
from devteam.observability.logging import get_logger
from devteam.observability.metrics import (
    RATE_LIMIT_REJECTIONS,
    RATE_LIMIT_UNAVAILABLE,
    export_at_zero,
)
from devteam.settings.security import RateLimitsConfig

log = get_logger(__name__)

T = TypeVar("T")

UNAVAILABLE_RETRY_AFTER_S = 5
"""`Retry-After` of a 503 answered because the rate-limit storage is unreachable."""
RECHECK_AFTER_S = 1.0
"""After the storage failed, checks skip it (and act as if it failed) this long, so
during an outage only one check a second waits for the timeout."""


class RateLimitScope(StrEnum):
    READ = "read"
    """Authenticated GET/HEAD API requests, per user."""
    WRITE = "write"
    """Every other authenticated API request, per user."""
    TASK_SUBMIT = "task_submit"
    """Tasks submitted, per user (on top of WRITE)."""
    LOGIN_IP = "login_ip"
    """Login attempts, per client IP."""
    LOGIN_FAILURES_CLIENT = "login_failures_client"
    """Failed logins, per (username, client IP)."""
    LOGIN_FAILURES_USERNAME = "login_failures_username"
    """Failed logins, per username from anywhere."""
    WS_CONNECT = "ws_connect"
    """WebSocket connections opened, per user."""

    @property
    def fails_open(self) -> bool:
        """Whether requests go on when this scope's storage cannot be reached."""
        return self in (RateLimitScope.READ, RateLimitScope.WS_CONNECT)


# Every scope's series exist from start-up, with the LLM's and the MCP servers' waits.
export_at_zero(RATE_LIMIT_REJECTIONS, [(s.value,) for s in RateLimitScope] + [("llm",), ("mcp",)])
export_at_zero(
    RATE_LIMIT_UNAVAILABLE,
    [(s.value, "allowed" if s.fails_open else "refused") for s in RateLimitScope],
)


@dataclass(frozen=True, slots=True)
class RateLimitState:
    """Where a caller stands in the tightest of a scope's windows."""

    limit: int
    remaining: int
    reset_after: int
    """Seconds until the window has room again (the oldest counted request leaves it)."""
    window_s: int

    def headers(self) -> dict[str, str]:
        """`RateLimit-*` headers (draft-ietf-httpapi-ratelimit-headers)."""
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_after),
            "RateLimit-Policy": f"{self.limit};w={self.window_s}",
        }


MAX_HITS_PER_SCRIPT = 256
"""Hits counted by one script at most; more waiting go in the next."""
MAX_CALLERS_REMEMBERED = 10_000
"""Callers whose window keys are kept worked out (the oldest are dropped first)."""

# Counts hits of several callers in order. KEYS: every hit's moving-window lists
# (one per limit, newest entry first, as `limits` keeps them), hit after hit.
# ARGV: now, then per hit the number of its windows and, per window, its limit and
# expiry. Counts each hit in its windows in turn, stopping at the first that is
# full, as `MovingWindowRateLimiter.hit` then `get_window_stats` per limit would.
# Answers one string: per hit (separated by "|") the windows looked at (by ";"),
# each "allowed,oldest,count" - one reply to read however many hits there were.
_HIT_AND_COUNT = """
local now = tonumber(ARGV[1])
local hits = {}
local arg, k = 2, 1
while arg <= #ARGV do
    local windows = tonumber(ARGV[arg])
    arg = arg + 1
    local answers = {}
    local stopped = false
    for _ = 1, windows do
        local key = KEYS[k]
        local limit = tonumber(ARGV[arg])
        local expiry = tonumber(ARGV[arg + 1])
        k, arg = k + 1, arg + 2
        if not stopped then
            local allowed = 0
            local last = redis.call('lindex', key, limit - 1)
            if not (last and tonumber(last) >= now - expiry) then
                redis.call('lpush', key, now)
                redis.call('ltrim', key, 0, limit - 1)
                redis.call('expire', key, expiry)
                allowed = 1
            end
            local low, high, found = 0, redis.call('llen', key) - 1, nil
            while low <= high do
                local mid = math.floor((low + high) / 2)
                local value = tonumber(redis.call('lindex', key, mid))
                if value and value >= now - expiry then
                    found = mid
                    low = mid + 1
                else
                    high = mid - 1
                end
            end
            local oldest, count = tostring(now), 0
            if found then
                oldest, count = tostring(redis.call('lindex', key, found)), found + 1
            end
            answers[#answers + 1] = allowed .. ',' .. oldest .. ',' .. count
            stopped = allowed == 0
        end
    end
    hits[#hits + 1] = table.concat(answers, ';')
end
return table.concat(hits, '|')
"""

Window = tuple[bool, float, int]
"""What the script found in one window: (hit counted, oldest entry in it, entries)."""


@dataclass(slots=True)
class _PendingHit:
    """One caller's hit waiting for the next script: its windows' keys and limits."""

    keys: list[str]
    items: list[RateLimitItem]
    deadline: float
    """When the caller gives up (the event loop's clock): its script must answer by then."""
    done: asyncio.Future[list[Window]]


class RateLimiter:
    def __init__(self, storage: Storage, config: RateLimitsConfig) -> None:
        self._strategy = MovingWindowRateLimiter(storage)
        self._redis: RedisStorage | None = storage if isinstance(storage, RedisStorage) else None
        self._script = (
            # The library's own redis-py client (the broker's connection pool).
            cast(Any, self._redis.bridge).get_connection().register_script(_HIT_AND_COUNT)
            if self._redis is not None
            else None
        )
        self._pending: list[_PendingHit] = []
        self._window_keys: dict[tuple[RateLimitScope, str], list[str]] = {}
        self._sending: asyncio.Task[None] | None = None
        self._timeout_s = config.storage_timeout_s
        self._skip_storage_until = 0.0
        self._limits: dict[RateLimitScope, list[RateLimitItem]] = {
            RateLimitScope.READ: parse_many(config.reads_per_user),
            RateLimitScope.WRITE: parse_many(config.writes_per_user),
            RateLimitScope.TASK_SUBMIT: parse_many(config.task_submissions_per_user),
            RateLimitScope.LOGIN_IP: parse_many(config.login_per_ip),
            RateLimitScope.LOGIN_FAILURES_CLIENT: parse_many(config.login_failures_per_client),
            RateLimitScope.LOGIN_FAILURES_USERNAME: parse_many(config.login_failures_per_username),
            RateLimitScope.WS_CONNECT: parse_many(config.ws_connect_per_user),
        }

    async def hit(self, scope: RateLimitScope, key: str) -> RateLimitState | None:
        """Count one request of `key` in `scope`.

        Returns the state of the tightest window; over a limit raises `RateLimited`
        (429) carrying `Retry-After` and the `RateLimit-*` headers, and counts it in
        `devteam_rate_limit_rejections_total`. With the storage unreachable, returns
        None for a scope that fails open and raises `ServiceUnavailable` otherwise.
        """
        return await self._guarded(
            scope, lambda: self._count(scope, key, refuse=True), bounded=self._script is not None
        )

    async def hit_in_turn(
        self, scopes: Sequence[RateLimitScope], key: str
    ) -> RateLimitState | None:
        """`hit` in each of `scopes` in turn, as one request to the storage: the first scope
        that refuses raises (the scopes after it count nothing). Returns the tightest state
        of them all; with the storage unreachable, answers as the first scope does."""
        if self._script is None or len(scopes) == 1:
            states = [await self.hit(scope, key) for scope in scopes]
            return min(
                (state for state in states if state is not None),
                key=lambda state: state.remaining,
                default=None,
            )
        return await self._guarded(
            scopes[0], lambda: self._count_in_one_script(scopes, key, refuse=True), bounded=True
        )

    async def check(self, scope: RateLimitScope, key: str) -> None:
        """Refuse (`RateLimited`) when `key` has no room left in `scope`, counting nothing."""
        await self._guarded(scope, lambda: self._test(scope, key))

    async def record(self, scope: RateLimitScope, key: str) -> None:
        """Count one event (e.g. a failed login) of `key` in `scope`, refusing nothing."""
        await self._guarded(
            scope, lambda: self._count(scope, key, refuse=False), bounded=self._script is not None
        )

    async def _guarded(
        self, scope: RateLimitScope, work: Callable[[], Awaitable[T]], *, bounded: bool = False
    ) -> T | None:
        """`work()`, given up after the storage timeout (`bounded`: `work` sees to it)."""
        if time.monotonic() < self._skip_storage_until:
            return self._unavailable(scope)
        try:
            if bounded:
                return await work()
            async with asyncio.timeout(self._timeout_s):
                return await work()
        except RateLimited:
            raise
        except Exception as exc:
            # Redis paused, down or unreachable: answer now rather than hang.
            self._skip_storage_until = time.monotonic() + RECHECK_AFTER_S
            log.warning(
                "rate limit storage unavailable",
                scope=scope.value,
                action="allowed" if scope.fails_open else "refused",
                error=type(exc).__name__,
            )
            return self._unavailable(scope)

    @staticmethod
    def _unavailable(scope: RateLimitScope) -> None:
        """Let a read through (the limit fails open); refuse anything else with 503."""
        action = "allowed" if scope.fails_open else "refused"
        RATE_LIMIT_UNAVAILABLE.labels(scope=scope.value, action=action).inc()
        if scope.fails_open:
            return None
        raise ServiceUnavailable(
            "the service cannot check its rate limits right now; try again shortly",
            headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)},
        )

    async def _count(self, scope: RateLimitScope, key: str, *, refuse: bool) -> RateLimitState:
        if self._script is not None:
            return await self._count_in_one_script((scope,), key, refuse=refuse)
        identifier = _identifier(key)
        tightest: RateLimitState | None = None
        for item in self._limits[scope]:
            allowed = await self._strategy.hit(item, scope.value, identifier)
            state = await self._state(item, scope, identifier)
            if refuse and not allowed:
                self._refuse(scope, item, state)
            if tightest is None or state.remaining < tightest.remaining:
                tightest = state
        assert tightest is not None, "parse_many returns at least one limit"
        return tightest

    async def _count_in_one_script(
        self, scopes: Sequence[RateLimitScope], key: str, *, refuse: bool
    ) -> RateLimitState:
        counted = [(scope, item) for scope in scopes for item in self._limits[scope]]
        keys = [k for scope in scopes for k in self._keys(scope, key)]
        loop = asyncio.get_running_loop()
        hit = _PendingHit(
            keys, [item for _, item in counted], loop.time() + self._timeout_s, loop.create_future()
        )
        self._pending.append(hit)
        if self._sending is None or self._sending.done():
            self._sending = asyncio.create_task(self._send_pending(), name="rate-limit-hits")
        answers = await hit.done
        tightest: RateLimitState | None = None
        now = time.time()
        # The script stops at the first full window: the windows after it have no answer.
        for (scope, item), (allowed, oldest, count) in zip(counted, answers, strict=False):
            state = RateLimitState(
                limit=item.amount,
                remaining=max(0, item.amount - count),
                reset_after=max(0, math.ceil(oldest + item.get_expiry() - now)),
                window_s=item.get_expiry(),
            )
            if refuse and not allowed:
                self._refuse(scope, item, state)
            if tightest is None or state.remaining < tightest.remaining:
                tightest = state
        assert tightest is not None, "parse_many returns at least one limit"
        return tightest

    def _keys(self, scope: RateLimitScope, key: str) -> list[str]:
        """The Redis keys of `key`'s windows in `scope` (worked out once per caller)."""
        keys = self._window_keys.get((scope, key))
        if keys is None:
            assert self._redis is not None
            identifier = _identifier(key)
            bridge = self._redis.bridge
            limits = self._limits[scope]
            keys = [bridge.prefixed_key(i.key_for(scope.value, identifier)) for i in limits]
            if len(self._window_keys) >= MAX_CALLERS_REMEMBERED:
                self._window_keys.pop(next(iter(self._window_keys)))
            self._window_keys[(scope, key)] = keys
        return keys

    async def _send_pending(self) -> None:
        """Count the waiting hits, as many as arrived, script after script.

        A script must answer before the first of its callers gives up. When it
        fails, the hits still waiting fail with it rather than wait their turn for a
        storage that does not answer (each caller then answers by its scope).
        """
        assert self._script is not None
        while self._pending:
            batch = self._pending[:MAX_HITS_PER_SCRIPT]
            del self._pending[: len(batch)]
            keys: list[str] = []
            args: list[float] = [time.time()]
            for hit in batch:
                keys += hit.keys
                args.append(len(hit.items))
                for item in hit.items:
                    args += [item.amount, item.get_expiry()]
            try:
                async with asyncio.timeout_at(min(hit.deadline for hit in batch)):
                    reply = await self._script(keys=keys, args=args)
            except Exception as exc:
                # Each caller answers for itself: fail open or refuse, by its scope.
                for hit in [*batch, *self._pending]:
                    if not hit.done.done():
                        hit.done.set_exception(exc)
                self._pending.clear()
                continue
            except BaseException:
                for hit in [*batch, *self._pending]:
                    hit.done.cancel()
                self._pending.clear()
                raise
            for hit, answer in zip(batch, _hits_of(reply), strict=True):
                if not hit.done.done():
                    hit.done.set_result(answer)

    async def _test(self, scope: RateLimitScope, key: str) -> None:
        identifier = _identifier(key)
        for item in self._limits[scope]:
            if not await self._strategy.test(item, scope.value, identifier):
                self._refuse(scope, item, await self._state(item, scope, identifier))

    async def _state(
        self, item: RateLimitItem, scope: RateLimitScope, identifier: str
    ) -> RateLimitState:
        stats = await self._strategy.get_window_stats(item, scope.value, identifier)
        return RateLimitState(
            limit=item.amount,
            remaining=max(0, stats.remaining),
            reset_after=max(0, math.ceil(stats.reset_time - time.time())),
            window_s=item.get_expiry(),
        )

    @staticmethod
    def _refuse(scope: RateLimitScope, item: RateLimitItem, state: RateLimitState) -> None:
        RATE_LIMIT_REJECTIONS.labels(scope=scope.value).inc()
        headers = {"Retry-After": str(max(1, state.reset_after)), **state.headers()}
        raise RateLimited(
            f"too many requests: at most {item.amount} per {_window(item)}; "
            f"retry in {headers['Retry-After']} s",
            headers=headers,
        )


def _hits_of(reply: bytes | str) -> list[list[Window]]:
    """The script's answer, per hit, per window looked at."""
    text = reply.decode() if isinstance(reply, bytes) else reply
    hits: list[list[Window]] = []
    for hit in text.split("|"):
        windows: list[Window] = []
        for window in hit.split(";"):
            allowed, oldest, count = window.split(",")
            windows.append((allowed == "1", float(oldest), int(count)))
        hits.append(windows)
    return hits


def _identifier(key: str) -> str:
    # Keys may be user input (usernames): hash them to a bounded, inert form.
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _window(item: RateLimitItem) -> str:
    granularity = item.GRANULARITY.name
    return granularity if item.multiples == 1 else f"{item.multiples} {granularity}s"
