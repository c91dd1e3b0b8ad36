"""Usage and cost of every LLM request, counted as it happens.

`MeteredModel` wraps a pydantic-ai model: after each response it prices the
tokens (the price table of agents.yaml first, then pydantic-ai's bundled price
list), writes the cost into the response's usage (so `UsageLimits.cost_limit`
sees our prices), counts the `devteam_llm_*` metrics, and hands the request's
`Usage` to a `UsageMeter` — which passes it on at once (`AgentContext.add_usage`),
so an attempt that fails, times out or is cancelled still reports what it spent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

from pydantic_ai.exceptions import (
    ModelAPIError,
    ModelConnectionError,
    ModelHTTPError,
    ModelRateLimitError,
)
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import RunContext

from devteam.domain.tasks import Usage
from devteam.observability import metrics
from devteam.observability.logging import get_logger
from devteam.settings.agents import Price

log = get_logger(__name__)

PER_MILLION = 1_000_000


class UsageMeter:
    """Adds up what one attempt used, and reports each part as it comes."""

    def __init__(self, on_usage: Callable[[Usage], None] | None = None) -> None:
        self.total = Usage()
        self._on_usage = on_usage

    def add(self, usage: Usage) -> None:
        self.total = self.total + usage
        if self._on_usage is not None:
            self._on_usage(usage)


class Pricing:
    """Turns a response's tokens into USD."""

    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._prices = dict(prices)
        self._unpriced_logged: set[str] = set()

    def price_for(self, model: str) -> Price | None:
        """The configured price of a model string, or of its bare model name."""
        return self._prices.get(model) or self._prices.get(model.split(":", 1)[-1])

    def cost(self, model: str, response: ModelResponse) -> float:
        usage = response.usage
        if (price := self.price_for(model)) is not None:
            cached = min(usage.cache_read_tokens, usage.input_tokens)
            cached_rate = price.input if price.cached_input is None else price.cached_input
            dollars = (
                (usage.input_tokens - cached) * price.input
                + cached * cached_rate
                + usage.output_tokens * price.output
            ) / PER_MILLION
            return round(dollars, 8)
        try:
            return float(response.cost().total_price)
        except (AssertionError, LookupError, ValueError):
            if model not in self._unpriced_logged:
                self._unpriced_logged.add(model)
                log.warning("no price for this model: its cost counts as 0", model=model)
            return 0.0


def request_outcome(error: BaseException) -> str:
    """The `outcome` label of a failed request."""
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    if isinstance(error, ModelRateLimitError) or (
        isinstance(error, ModelHTTPError) and error.status_code == 429
    ):
        return "rate_limited"
    if isinstance(error, ModelHTTPError):
        return "server_error" if error.status_code >= 500 else "rejected"
    if isinstance(error, ModelConnectionError):
        return "connection_error"
    return "error"


class MeteredModel(WrapperModel):
    """Counts the usage, cost and metrics of each request to the wrapped model."""

    def __init__(
        self,
        wrapped: Model,
        *,
        label: str,
        agent: str,
        pricing: Pricing,
        meter: UsageMeter | None = None,
    ) -> None:
        super().__init__(wrapped)
        self.metric_label = label
        """The model string as configured: the `model` label of the metrics."""
        self.agent = agent
        self.pricing = pricing
        self.meter = meter

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        try:
            response = await self.wrapped.request(
                messages, model_settings, model_request_parameters
            )
        except BaseException as exc:
            self._failed(exc)
            raise
        cost = self._succeeded(response)
        # Set before pydantic-ai prices it, so run usage and `cost_limit` use our prices.
        response.usage.cost = Decimal(str(cost))
        return response

    def _failed(self, error: BaseException) -> None:
        outcome = request_outcome(error)
        metrics.LLM_REQUESTS.labels(self.metric_label, self.agent, outcome).inc()
        if isinstance(error, ModelAPIError):
            log.warning(
                "llm request failed", model=self.metric_label, outcome=outcome, error=str(error)
            )

    def _succeeded(self, response: ModelResponse) -> float:
        """Count a response; its cost."""
        cost = self.pricing.cost(self.metric_label, response)
        usage = Usage(
            requests=1,
            input_tokens=response.usage.input_tokens,
            output_tokens=response.usage.output_tokens,
            cost_usd=cost,
        )
        labels = (self.metric_label, self.agent)
        metrics.LLM_REQUESTS.labels(*labels, "ok").inc()
        metrics.LLM_TOKENS.labels(*labels, "input").inc(usage.input_tokens)
        metrics.LLM_TOKENS.labels(*labels, "output").inc(usage.output_tokens)
        metrics.LLM_COST.labels(*labels).inc(cost)
        if self.meter is not None:
            self.meter.add(usage)
        return cost

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncGenerator[StreamedResponse]:
        try:
            async with self.wrapped.request_stream(
                messages, model_settings, model_request_parameters, run_context
            ) as stream:
                yield stream
        except BaseException as exc:
            self._failed(exc)
            raise
        self._succeeded(stream.get())
