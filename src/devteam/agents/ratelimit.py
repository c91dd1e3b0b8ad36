"""The provider rate limit: requests per period, shared by every process through the broker.

Each attempt at a request (retries included) takes one hit of a moving window
kept in the broker's rate-limit storage (Redis when several processes run), so
the processes of one deployment stay under the provider's limit together. A
request over the limit waits for room; the attempt's own timeout bounds the wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import RunContext

from devteam.observability import metrics

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


class RateLimitedModel(WrapperModel):
    def __init__(self, wrapped: Model, limit: ProviderRateLimit) -> None:
        super().__init__(wrapped)
        self.limit = limit

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        await self.limit.acquire()
        return await self.wrapped.request(messages, model_settings, model_request_parameters)

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncGenerator[StreamedResponse]:
        await self.limit.acquire()
        async with self.wrapped.request_stream(
            messages, model_settings, model_request_parameters, run_context
        ) as stream:
            yield stream
