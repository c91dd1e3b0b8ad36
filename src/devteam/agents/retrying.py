"""Retries of LLM requests that may pass: 429, 5xx, and requests that never got an answer.

The provider SDK's own retries are turned off (the clients are built with
`max_retries=0`), so every attempt passes the rate limit and the metrics, and
the policy is the one in agents.yaml: exponential backoff with jitter, or the
provider's `Retry-After` when it sends one — unless it asks for longer than
`max_retry_after_s`, which is given up at once. A refused request (400, 401,
404, an exhausted quota) is never retried: sending it again cannot help.
"""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from pydantic_ai.exceptions import (
    ModelConnectionError,
    ModelHTTPError,
    ModelQuotaExceededError,
    ModelRateLimitError,
    ModelServerError,
    ModelUnavailableError,
)
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import RunContext
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from devteam.observability.logging import get_logger
from devteam.settings.agents import LlmRetryConfig

log = get_logger(__name__)

Sleep = Callable[[float], Awaitable[None]]


def is_retryable(error: BaseException) -> bool:
    if isinstance(error, ModelQuotaExceededError):
        return False
    if isinstance(error, ModelHTTPError):
        return error.status_code in (408, 429) or error.status_code >= 500
    return isinstance(
        error, ModelRateLimitError | ModelServerError | ModelUnavailableError | ModelConnectionError
    )


def retry_after(error: BaseException | None) -> float | None:
    return getattr(error, "retry_after", None)


class RetryingModel(WrapperModel):
    def __init__(
        self, wrapped: Model, policy: LlmRetryConfig, *, sleep: Sleep | None = None
    ) -> None:
        super().__init__(wrapped)
        self.policy = policy
        self._sleep = sleep

    def backoff(self, state: RetryCallState) -> float:
        """How long to wait before the next attempt."""
        error = state.outcome.exception() if state.outcome is not None else None
        if (asked := retry_after(error)) is not None:
            return asked
        policy = self.policy
        exponential = policy.initial_backoff_s * policy.multiplier ** (state.attempt_number - 1)
        return min(exponential, policy.max_backoff_s) + random.uniform(0, policy.jitter_s)

    def give_up(self, state: RetryCallState) -> bool:
        if state.attempt_number >= self.policy.max_attempts:
            return True
        error = state.outcome.exception() if state.outcome is not None else None
        asked = retry_after(error)
        return asked is not None and asked > self.policy.max_retry_after_s

    def _before_sleep(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.info(
            "llm request retried",
            model=self.model_name,
            failed_attempt=state.attempt_number,
            error=type(error).__name__ if error else None,
            wait_s=round(wait, 3),
        )

    def _retrying(self) -> AsyncRetrying:
        options: dict[str, Any] = {}
        if self._sleep is not None:
            options["sleep"] = self._sleep
        return AsyncRetrying(
            stop=self.give_up,
            wait=self.backoff,
            retry=retry_if_exception(is_retryable),
            before_sleep=self._before_sleep,
            reraise=True,
            **options,
        )

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        async for attempt in self._retrying():
            with attempt:
                return await self.wrapped.request(
                    messages, model_settings, model_request_parameters
                )
        raise AssertionError("tenacity ends with a result or the last error")  # pragma: no cover

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncGenerator[StreamedResponse]:
        # Only opening the stream is retried: once parts arrive, a failure is final.
        async with AsyncExitStack() as stack:
            async for attempt in self._retrying():
                with attempt:
                    stream = await stack.enter_async_context(
                        self.wrapped.request_stream(
                            messages, model_settings, model_request_parameters, run_context
                        )
                    )
            yield stream
