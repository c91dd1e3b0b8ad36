"""The circuit breaker's state machine, on a clock that moves only when told to."""

from __future__ import annotations

from typing import Any

import pytest

from devteam.mcp.breaker import CircuitBreaker, CircuitState
from devteam.mcp.errors import CallNotPermitted
from devteam.settings.mcp_servers import BreakerPolicy
from tests.fakes.clock import ManualClock

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


def make_breaker(
    clock: ManualClock, transitions: list[tuple[str, str]] | None = None, **policy: Any
) -> CircuitBreaker:
    values: dict[str, Any] = {
        "sliding_window_size": 4,
        "minimum_number_of_calls": 4,
        "failure_rate_threshold": 50,
        "slow_call_duration_threshold_s": 1.0,
        "slow_call_rate_threshold": 100,
        "wait_duration_in_open_state_s": 10,
        "permitted_number_of_calls_in_half_open_state": 2,
    }
    values.update(policy)

    def listen(name: str, old: CircuitState, new: CircuitState) -> None:
        if transitions is not None:
            transitions.append((old.value, new.value))

    return CircuitBreaker("s", BreakerPolicy(**values), clock=clock, on_transition=listen)


def succeed(breaker: CircuitBreaker, times: int = 1, duration: float = 0.1) -> None:
    for _ in range(times):
        breaker.acquire().record_success(duration)


def fail(breaker: CircuitBreaker, times: int = 1, duration: float = 0.1) -> None:
    for _ in range(times):
        breaker.acquire().record_failure(duration)


def test_stays_closed_below_the_minimum_number_of_calls() -> None:
    breaker = make_breaker(ManualClock())
    fail(breaker, 3)
    assert breaker.state is CLOSED
    assert breaker.snapshot().failure_rate == 100.0


def test_opens_when_the_failure_rate_reaches_the_threshold() -> None:
    transitions: list[tuple[str, str]] = []
    breaker = make_breaker(ManualClock(), transitions)
    succeed(breaker, 2)
    fail(breaker, 1)
    assert breaker.state is CLOSED  # 3 calls: below the minimum
    fail(breaker, 1)  # 2 of 4 failed: 50% >= 50%
    assert breaker.state is OPEN
    assert transitions == [("closed", "open")]


def test_stays_closed_below_the_failure_rate_threshold() -> None:
    breaker = make_breaker(ManualClock(), failure_rate_threshold=60)
    succeed(breaker, 2)
    fail(breaker, 2)
    assert breaker.state is CLOSED


def test_the_window_slides_over_the_last_calls() -> None:
    breaker = make_breaker(ManualClock())
    fail(breaker, 1)
    succeed(breaker, 3)
    assert breaker.state is CLOSED  # 1 of 4
    succeed(breaker, 1)  # the failure slides out of the window
    assert breaker.snapshot().failed == 0
    fail(breaker, 1)
    assert breaker.state is CLOSED  # 1 of the last 4
    fail(breaker, 1)
    assert breaker.state is OPEN  # 2 of the last 4


def test_opens_on_the_slow_call_rate() -> None:
    breaker = make_breaker(ManualClock(), slow_call_rate_threshold=75)
    succeed(breaker, 1, duration=0.2)
    succeed(breaker, 2, duration=1.5)
    assert breaker.state is CLOSED
    succeed(breaker, 1, duration=1.0)  # at the threshold counts as slow: 3 of 4
    assert breaker.state is OPEN
    assert breaker.snapshot().slow_call_rate == 75.0
    assert breaker.snapshot().failure_rate == 0.0


def test_fails_fast_while_open_then_goes_half_open_after_the_wait() -> None:
    clock = ManualClock()
    breaker = make_breaker(clock)
    fail(breaker, 4)
    assert breaker.state is OPEN
    clock.advance(9.9)
    with pytest.raises(CallNotPermitted, match=r"circuit open for another 0\.1s"):
        breaker.acquire()
    assert breaker.remaining_open_s() == pytest.approx(0.1)
    clock.advance(0.1)
    breaker.acquire()
    assert breaker.state is HALF_OPEN


def test_half_open_permits_only_the_probe_calls() -> None:
    clock = ManualClock()
    breaker = make_breaker(clock)
    fail(breaker, 4)
    clock.advance(10)
    first, second = breaker.acquire(), breaker.acquire()
    with pytest.raises(CallNotPermitted, match="half-open"):
        breaker.acquire()
    first.record_success(0.1)
    assert breaker.state is HALF_OPEN  # waits for every probe
    second.record_success(0.1)
    assert breaker.state is CLOSED


def test_closes_after_successful_probes_with_an_empty_window() -> None:
    clock = ManualClock()
    transitions: list[tuple[str, str]] = []
    breaker = make_breaker(clock, transitions)
    fail(breaker, 4)
    clock.advance(10)
    succeed(breaker, 2)
    assert breaker.state is CLOSED
    assert breaker.snapshot().calls == 0
    assert transitions == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_reopens_when_a_probe_fails() -> None:
    clock = ManualClock()
    transitions: list[tuple[str, str]] = []
    breaker = make_breaker(clock, transitions)
    fail(breaker, 4)
    clock.advance(10)
    succeed(breaker, 1)
    fail(breaker, 1)  # 1 of 2 probes failed: 50% >= 50%
    assert breaker.state is OPEN
    assert transitions[-1] == ("half_open", "open")
    with pytest.raises(CallNotPermitted):
        breaker.acquire()  # the wait starts again
    clock.advance(10)
    breaker.acquire()
    assert breaker.state is HALF_OPEN


def test_a_released_probe_frees_its_slot() -> None:
    clock = ManualClock()
    breaker = make_breaker(clock, permitted_number_of_calls_in_half_open_state=1)
    fail(breaker, 4)
    clock.advance(10)
    permit = breaker.acquire()
    with pytest.raises(CallNotPermitted):
        breaker.acquire()
    permit.release()  # the probe was cancelled
    assert breaker.state is HALF_OPEN
    breaker.acquire().record_success(0.1)
    assert breaker.state is CLOSED


def test_an_outcome_from_before_the_breaker_opened_is_ignored() -> None:
    clock = ManualClock()
    breaker = make_breaker(clock)
    late = breaker.acquire()  # a slow call that started while closed
    fail(breaker, 4)
    assert breaker.state is OPEN
    clock.advance(10)
    breaker.acquire()
    late.record_success(0.1)  # arrives in half-open: not one of its probes
    assert breaker.state is HALF_OPEN
    assert breaker.snapshot().calls == 0


def test_a_permit_records_once() -> None:
    breaker = make_breaker(ManualClock())
    permit = breaker.acquire()
    permit.record_success(0.1)
    with pytest.raises(RuntimeError, match="one outcome"):
        permit.record_failure(0.1)


@pytest.mark.parametrize(
    ("state", "value"),
    [(CLOSED, 0), (HALF_OPEN, 1), (OPEN, 2)],
    ids=["closed", "half_open", "open"],
)
def test_gauge_values(state: CircuitState, value: int) -> None:
    assert state.gauge_value == value
