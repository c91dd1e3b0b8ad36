"""The provider rate limit: requests per period, shared by every process through the broker.

Each attempt at a request (retries included) takes one hit of a moving window
kept in the broker's rate-limit storage (Redis when several processes run), so
the processes of one deployment stay under the provider's limit together. A
request over the limit waits for room; the attempt's own timeout bounds the wait.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter

from devteam.observability import metrics

# `RateLimitedModel` (a pydantic-ai model wrapper) lives in ratelimited_model.py, so the
# LLM stack loads only when a model is used; it is still reachable here.

MIN_WAIT_S = 0.01


class ProviderRateLimit:
    """A moving-window limit on one provider's requests."""

    def __init__(self, storage: Storage, rate: str, provider: str) -> None:
        self._limiter = MovingWindowRateLimiter(storage)
        self._items: list[RateLimitItem] = parse_many(rate)
        self.rate = rate
        self.provider = provider

    async def acquire(self) -> float:
        """Take one hit of every window, waiting for room; returns the seconds waited."""
        started = time.monotonic()
        waited = False
        for item in self._items:
            while not await self._limiter.hit(item, "llm", self.provider):
                if not waited:
                    waited = True
                    metrics.RATE_LIMIT_REJECTIONS.labels(scope="llm").inc()
                stats = await self._limiter.get_window_stats(item, "llm", self.provider)
                await asyncio.sleep(max(MIN_WAIT_S, stats.reset_time - time.time()))
        return time.monotonic() - started


def __getattr__(name: str) -> Any:
    if name == "RateLimitedModel":
        from devteam.agents.ratelimited_model import RateLimitedModel

        return RateLimitedModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
