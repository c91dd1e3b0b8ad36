"""`MeteredModel`: a pydantic-ai model wrapper that meters each request (see metering.py)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

from pydantic_ai.exceptions import ModelAPIError
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import RunContext

from devteam.agents.metering import Pricing, UsageMeter, request_outcome
from devteam.domain.tasks import Usage
from devteam.observability import metrics
from devteam.observability.logging import get_logger

log = get_logger("devteam.agents.metering")


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
