"""Retries with exponential backoff and jitter, for failures that may pass.

Only a broken or unreachable transport (`TransportFailure`) and a call that got
no answer in time (`CallTimeout`) are retried. An answer is never retried: a
result with `is_error` is the tool's answer, and a JSON-RPC error is the
server's. Neither is a refusal of our own making (open circuit, rate limit),
which a retry could only repeat.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from mcp_types import CallToolResult, Tool
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from devteam.mcp.caller import ToolCaller, WrapperCaller
from devteam.mcp.errors import CallTimeout, TransportFailure
from devteam.settings.mcp_servers import RetryPolicy

T = TypeVar("T")
RETRYABLE = (TransportFailure, CallTimeout)

RetryListener = Callable[[str, str, int, BaseException, float], None]
"""Called before each retry with (server, tool, attempt that failed, its error, wait in s)."""
Sleep = Callable[[float], Awaitable[None]]


class RetryingCaller(WrapperCaller):
    def __init__(
        self,
        inner: ToolCaller,
        policy: RetryPolicy,
        *,
        on_retry: RetryListener | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(inner)
        self.policy = policy
        self._on_retry = on_retry
        self._sleep = sleep

    async def call_tool(self, tool: str, arguments: Mapping[str, Any]) -> CallToolResult:
        return await self._retrying(tool, lambda: self.inner.call_tool(tool, arguments))

    async def list_tools(self) -> list[Tool]:
        return await self._retrying("tools/list", self.inner.list_tools)

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        policy = self.policy

        def before_sleep(state: RetryCallState) -> None:
            if self._on_retry is None or state.outcome is None:
                return
            error = state.outcome.exception()
            wait = state.next_action.sleep if state.next_action is not None else 0.0
            if error is not None:
                self._on_retry(self.server, what, state.attempt_number, error, wait)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.max_attempts),
            wait=wait_exponential_jitter(
                multiplier=policy.initial_backoff_s,
                exp_base=policy.multiplier,
                max=policy.max_backoff_s,
                jitter=policy.jitter_s,
            ),
            retry=retry_if_exception_type(RETRYABLE),
            before_sleep=before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await call()
        raise AssertionError("tenacity ends with a result or the last error")  # pragma: no cover
