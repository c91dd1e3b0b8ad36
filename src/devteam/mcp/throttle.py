"""Concurrency and rate limits on the calls to one server.

`max_concurrent_calls` is per process (a semaphore); `rate_limit` is shared by
every process on the broker (the `limits` library's moving window on the
broker's rate-limit storage). A call over either waits, at most for its own
timeout, and then fails with `Throttled` — a refusal of our own, not a server
failure, so the breaker does not count it and it is not retried. The time spent
waiting goes to the call's trace, so the breaker does not count it as slowness.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from mcp_types import CallToolResult

from devteam.mcp.caller import ToolCaller, WrapperCaller, current_trace
from devteam.mcp.errors import Throttled
from devteam.observability.metrics import RATE_LIMIT_REJECTIONS

MIN_WAIT_S = 0.01


class RateLimit:
    """A moving-window rate limit on one key, shared through `storage`."""

    def __init__(self, storage: Storage, rate: str, key: str) -> None:
        self._limiter = MovingWindowRateLimiter(storage)
        self._items: list[RateLimitItem] = parse_many(rate)
        self._key = key
        self.rate = rate

    async def wait_for_room(self, server: str, budget_s: float) -> None:
        """Take one hit on every item, waiting for room at most `budget_s` in all."""
        deadline = time.monotonic() + budget_s
        for item in self._items:
            while not await self._limiter.hit(item, "mcp", self._key):
                stats = await self._limiter.get_window_stats(item, "mcp", self._key)
                wait = max(MIN_WAIT_S, stats.reset_time - time.time())
                if time.monotonic() + wait > deadline:
                    RATE_LIMIT_REJECTIONS.labels(scope="mcp").inc()
                    raise Throttled(server, f"rate limit {self.rate} leaves no room in time")
                await asyncio.sleep(wait)


class ThrottledCaller(WrapperCaller):
    """Waits for a free slot and for room under the rate limit before each tool call."""

    def __init__(
        self,
        inner: ToolCaller,
        *,
        slots: asyncio.Semaphore,
        rate_limit: RateLimit | None,
        budget_for: Callable[[str], float],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(inner)
        self._slots = slots
        self._rate_limit = rate_limit
        self._budget_for = budget_for
        self._clock = clock

    async def call_tool(self, tool: str, arguments: Mapping[str, Any]) -> CallToolResult:
        budget = self._budget_for(tool)
        started = self._clock()
        try:
            try:
                async with asyncio.timeout(budget):
                    await self._slots.acquire()
            except TimeoutError:
                raise Throttled(self.server, f"no free call slot within {budget:g}s") from None
            try:
                if self._rate_limit is not None:
                    await self._rate_limit.wait_for_room(self.server, budget)
            except BaseException:
                self._slots.release()
                raise
        finally:
            if (trace := current_trace()) is not None:
                trace.waited_s += self._clock() - started
        try:
            return await self.inner.call_tool(tool, arguments)
        finally:
            self._slots.release()
