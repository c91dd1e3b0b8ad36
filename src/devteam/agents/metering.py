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
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from devteam.domain.tasks import Usage
from devteam.observability.logging import get_logger
from devteam.settings.agents import Price

if TYPE_CHECKING:
    from pydantic_ai.messages import ModelResponse


# pydantic-ai (the LLM stack) is imported when a model is used, not with this module:
# a service with no LLM configured starts without it. `MeteredModel` lives in
# metered_model.py and is still reachable here.

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
    from pydantic_ai.exceptions import ModelConnectionError, ModelHTTPError, ModelRateLimitError

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


def __getattr__(name: str) -> Any:
    if name == "MeteredModel":
        from devteam.agents.metered_model import MeteredModel

        return MeteredModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
