"""A circuit breaker with resilience4j's count-based semantics.

CLOSED: every call is let through; the outcomes of the last `sliding_window_size`
calls are kept. Once at least `minimum_number_of_calls` are recorded, the
breaker opens when the failure rate or the slow-call rate (in percent of the
recorded calls) reaches its threshold.

OPEN: calls are refused (`CallNotPermitted`) until `wait_duration_in_open_state`
has passed; the next call attempt then moves the breaker to HALF_OPEN.

HALF_OPEN: only `permitted_number_of_calls_in_half_open_state` probe calls are let
through. When all of them have finished, the breaker closes (with an empty
window) if both rates are below their thresholds, and opens again otherwise.

A call's outcome counts only in the state (and the visit of that state) in which
it was permitted, so a slow call that started before the breaker opened cannot
close or reopen it later. A permit given back with `release()` (the call was
cancelled) frees its half-open slot without recording anything.

The breaker runs on one event loop and never awaits, so it needs no lock.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from mcp_types import CallToolResult, Tool

from devteam.mcp.caller import ToolCaller, WrapperCaller, current_trace
from devteam.mcp.errors import CallNotPermitted, CallTimeout, ProtocolError, TransportFailure
from devteam.settings.mcp_servers import BreakerPolicy

Clock = Callable[[], float]
T = TypeVar("T")


class CircuitState(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"

    @property
    def gauge_value(self) -> int:
        """The value of the `devteam_mcp_circuit_state` gauge: 0 closed, 1 half-open, 2 open."""
        return {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}[self]


TransitionListener = Callable[[str, CircuitState, CircuitState], None]
"""Called with (breaker name, old state, new state) on every state change."""


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    state: CircuitState
    calls: int
    """Outcomes recorded in the current window."""
    failed: int
    slow: int

    @property
    def failure_rate(self) -> float:
        return 100.0 * self.failed / self.calls if self.calls else 0.0

    @property
    def slow_call_rate(self) -> float:
        return 100.0 * self.slow / self.calls if self.calls else 0.0


class _Window:
    """The outcomes of the last `size` calls, with running counts."""

    def __init__(self, size: int) -> None:
        self._outcomes: deque[tuple[bool, bool]] = deque(maxlen=size)
        self.failed = 0
        self.slow = 0

    def __len__(self) -> int:
        return len(self._outcomes)

    def add(self, *, failed: bool, slow: bool) -> None:
        if len(self._outcomes) == self._outcomes.maxlen:
            old_failed, old_slow = self._outcomes[0]
            self.failed -= old_failed
            self.slow -= old_slow
        self._outcomes.append((failed, slow))
        self.failed += failed
        self.slow += slow


class Permit:
    """Permission for one call; report its outcome exactly once (or `release` it)."""

    __slots__ = ("_breaker", "_done", "_visit")

    def __init__(self, breaker: CircuitBreaker, visit: int) -> None:
        self._breaker = breaker
        self._visit = visit
        self._done = False

    def record_success(self, duration: float) -> None:
        self._finish(failed=False, duration=duration)

    def record_failure(self, duration: float) -> None:
        self._finish(failed=True, duration=duration)

    def release(self) -> None:
        """The call was abandoned (cancelled): free the permit, record nothing."""
        if not self._done:
            self._done = True
            self._breaker._release(self._visit)

    def _finish(self, *, failed: bool, duration: float) -> None:
        if self._done:
            raise RuntimeError("a permit records one outcome")
        self._done = True
        self._breaker._record(self._visit, failed=failed, duration=duration)


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        policy: BreakerPolicy,
        *,
        clock: Clock = time.monotonic,
        on_transition: TransitionListener | None = None,
    ) -> None:
        self.name = name
        self.policy = policy
        self._clock = clock
        self._on_transition = on_transition
        self._state = CircuitState.CLOSED
        self._visit = 0
        """Counts state changes; a permit records only in the visit it was given in."""
        self._window = _Window(policy.sliding_window_size)
        self._opened_at = 0.0
        self._half_open_free = 0

    @property
    def state(self) -> CircuitState:
        return self._state

    def snapshot(self) -> BreakerSnapshot:
        return BreakerSnapshot(
            state=self._state,
            calls=len(self._window),
            failed=self._window.failed,
            slow=self._window.slow,
        )

    def remaining_open_s(self) -> float:
        """Seconds until an open breaker lets probe calls through (0 when not open)."""
        if self._state is not CircuitState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.policy.wait_duration_in_open_state_s - self._clock())

    def acquire(self) -> Permit:
        """A permit for one call, or `CallNotPermitted`."""
        if self._state is CircuitState.OPEN:
            if self.remaining_open_s() > 0:
                raise CallNotPermitted(
                    self.name, f"circuit open for another {self.remaining_open_s():.1f}s"
                )
            self._transition(CircuitState.HALF_OPEN)
        if self._state is CircuitState.HALF_OPEN:
            if self._half_open_free == 0:
                raise CallNotPermitted(self.name, "circuit half-open, every probe call taken")
            self._half_open_free -= 1
        return Permit(self, self._visit)

    def _release(self, visit: int) -> None:
        if visit == self._visit and self._state is CircuitState.HALF_OPEN:
            self._half_open_free += 1

    def _record(self, visit: int, *, failed: bool, duration: float) -> None:
        if visit != self._visit or self._state is CircuitState.OPEN:
            return
        slow = duration >= self.policy.slow_call_duration_threshold_s
        self._window.add(failed=failed, slow=slow)
        if self._state is CircuitState.CLOSED:
            if len(self._window) >= self.policy.minimum_number_of_calls and self._over_threshold():
                self._transition(CircuitState.OPEN)
        elif len(self._window) >= self.policy.permitted_number_of_calls_in_half_open_state:
            self._transition(CircuitState.OPEN if self._over_threshold() else CircuitState.CLOSED)

    def _over_threshold(self) -> bool:
        snapshot = self.snapshot()
        return (
            snapshot.failure_rate >= self.policy.failure_rate_threshold
            or snapshot.slow_call_rate >= self.policy.slow_call_rate_threshold
        )

    def _transition(self, new: CircuitState) -> None:
        old, self._state = self._state, new
        self._visit += 1
        if new is CircuitState.OPEN:
            self._opened_at = self._clock()
        elif new is CircuitState.HALF_OPEN:
            self._window = _Window(self.policy.permitted_number_of_calls_in_half_open_state)
            self._half_open_free = self.policy.permitted_number_of_calls_in_half_open_state
        else:
            self._window = _Window(self.policy.sliding_window_size)
        if self._on_transition is not None:
            self._on_transition(self.name, old, new)


class BreakerCaller(WrapperCaller):
    """Asks the breaker before each call to the server and tells it how the call went.

    Transport failures and timeouts are failures; an answer — a result, even one
    with `is_error`, or a JSON-RPC error from the server — is a success. A call
    abandoned (cancelled, or refused by the throttle inside) gives its permit back.
    Tool listings count like calls.
    """

    def __init__(self, inner: ToolCaller, breaker: CircuitBreaker, *, clock: Clock) -> None:
        super().__init__(inner)
        self.breaker = breaker
        self._clock = clock

    async def call_tool(self, tool: str, arguments: Mapping[str, Any]) -> CallToolResult:
        return await self._guarded(lambda: self.inner.call_tool(tool, arguments))

    async def list_tools(self) -> list[Tool]:
        return await self._guarded(self.inner.list_tools)

    async def _guarded(self, call: Callable[[], Awaitable[T]]) -> T:
        permit = self.breaker.acquire()
        trace = current_trace()
        waited_before = trace.waited_s if trace is not None else 0.0
        started = self._clock()

        def duration() -> float:
            # Waiting for a slot, the rate limit or a session is ours, not server slowness.
            waited = trace.waited_s - waited_before if trace is not None else 0.0
            return max(0.0, self._clock() - started - waited)

        try:
            result = await call()
        except (TransportFailure, CallTimeout):
            permit.record_failure(duration())
            raise
        except ProtocolError:
            permit.record_success(duration())
            raise
        except BaseException:
            permit.release()
            raise
        permit.record_success(duration())
        return result
