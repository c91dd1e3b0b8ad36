"""Timeouts, retries, the breaker, fallbacks, restarts and limits, on a real MCP server.

The server is `tests/fakes/fault_server.py` over stdio; its call log shows how
often it was really called, so a test can tell a retry from an answer.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from devteam.broker.protocol import Broker
from devteam.mcp.breaker import CircuitState
from devteam.mcp.errors import CircuitOpen, ToolUnavailable
from tests.fakes.clock import ManualClock
from tests.fakes.faults import FaultPlan
from tests.integration.mcp.conftest import MakeManager

pytestmark = pytest.mark.slow

FAST_RETRY = {"max_attempts": 3, "initial_backoff_s": 0.01, "max_backoff_s": 0.02, "jitter_s": 0}


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a condition another process brings about (its files), polling briefly."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def plan(tmp_path: Path) -> FaultPlan:
    return FaultPlan(tmp_path / "fault")


async def test_a_tool_error_is_an_answer_and_is_not_retried(
    make_manager: MakeManager, plan: FaultPlan
) -> None:
    manager = make_manager({"fault": plan.server_config(retry=FAST_RETRY)})
    retries = sample("devteam_mcp_retries_total", server="fault")
    errors = sample("devteam_mcp_calls_total", server="fault", tool="work", outcome="tool_error")
    plan.set("error")
    answer = await manager.call("fault", "work", {"text": "x"})
    assert answer.is_error
    assert answer.text == "Error executing tool work: fault: injected tool error"
    assert answer.attempts == 1
    assert plan.calls() == ["error"]
    assert sample("devteam_mcp_retries_total", server="fault") == retries
    assert (
        sample("devteam_mcp_calls_total", server="fault", tool="work", outcome="tool_error")
        == errors + 1
    )
    assert manager.breaker("fault").snapshot().failed == 0


async def test_a_timeout_is_retried(make_manager: MakeManager, plan: FaultPlan) -> None:
    manager = make_manager({"fault": plan.server_config(retry=FAST_RETRY, call_timeout_s=1)})
    retries = sample("devteam_mcp_retries_total", server="fault")
    timeouts = sample("devteam_mcp_calls_total", server="fault", tool="work", outcome="timeout")
    plan.set("hang", "ok")
    answer = await manager.call("fault", "work", {"text": "x"})
    assert answer.text == "fault: x"
    assert answer.attempts == 2
    assert plan.calls() == ["hang", "ok"]
    assert sample("devteam_mcp_retries_total", server="fault") == retries + 1
    assert (
        sample("devteam_mcp_calls_total", server="fault", tool="work", outcome="timeout")
        == timeouts + 1
    )


async def test_retries_stop_after_max_attempts(make_manager: MakeManager, plan: FaultPlan) -> None:
    retry = {**FAST_RETRY, "max_attempts": 2}
    manager = make_manager({"fault": plan.server_config(retry=retry, call_timeout_s=0.5)})
    plan.set("hang", "hang", "ok")
    with pytest.raises(ToolUnavailable, match=r"work gave no answer within 0\.5s") as caught:
        await manager.call("fault", "work", {"text": "x"})
    assert not isinstance(caught.value, CircuitOpen)
    assert caught.value.code == "tool_unavailable"
    assert plan.calls() == ["hang", "hang"]


async def test_a_crashed_server_is_started_again_on_the_next_call(
    make_manager: MakeManager, plan: FaultPlan
) -> None:
    manager = make_manager({"fault": plan.server_config()})  # no retries
    plan.set("crash")
    with pytest.raises(ToolUnavailable, match="connection closed"):
        await manager.call("fault", "work", {"text": "one"})
    answer = await manager.call("fault", "work", {"text": "two"})
    assert answer.text == "fault: two"
    assert plan.calls() == ["crash", "ok"]
    first, second = plan.pids()
    assert first != second
    connection = manager.connection("fault")
    assert connection is not None and connection.sessions_opened == 2


async def test_a_crash_mid_call_is_retried_on_a_new_process(
    make_manager: MakeManager, plan: FaultPlan
) -> None:
    manager = make_manager({"fault": plan.server_config(retry=FAST_RETRY)})
    plan.set("crash")
    answer = await manager.call("fault", "work", {"text": "x"})
    assert answer.text == "fault: x"
    assert answer.attempts == 2
    assert plan.calls() == ["crash", "ok"]
    assert len(set(plan.pids())) == 2


@pytest.mark.parametrize("protocol", ["auto", "legacy"])
async def test_a_server_killed_between_calls_is_started_again(
    make_manager: MakeManager, plan: FaultPlan, protocol: str
) -> None:
    retry = {**FAST_RETRY, "max_attempts": 2}
    manager = make_manager({"fault": plan.server_config(protocol=protocol, retry=retry)})
    pid = (await manager.call("fault", "pid")).structured
    connection = manager.connection("fault")
    assert connection is not None
    os.kill(pid, signal.SIGKILL)
    if protocol == "auto":
        # The change subscription of the 2026 protocol ends with the process: the
        # session is dropped before any call notices.
        await until(lambda: not connection.connected)
    answer = await manager.call("fault", "pid")
    assert answer.structured != pid
    assert answer.attempts == (1 if protocol == "auto" else 2)
    assert connection.sessions_opened == 2


BREAKER = {
    "sliding_window_size": 4,
    "minimum_number_of_calls": 4,
    "failure_rate_threshold": 50,
    "wait_duration_in_open_state_s": 30,
    "permitted_number_of_calls_in_half_open_state": 2,
}


async def test_the_breaker_opens_fails_fast_half_opens_and_closes(
    make_manager: MakeManager, plan: FaultPlan
) -> None:
    clock = ManualClock()
    config = plan.server_config(breaker=BREAKER, call_timeout_s=0.5)
    manager = make_manager({"fault": config}, clock=clock)
    breaker = manager.breaker("fault")
    opened = sample("devteam_mcp_circuit_transitions_total", server="fault", state="open")

    async def work() -> Any:
        return await manager.call("fault", "work", {"text": "x"})

    plan.set("ok", "ok", "hang", "hang")
    await work()
    await work()
    for _ in range(2):
        with pytest.raises(ToolUnavailable):
            await work()
    assert breaker.state is CircuitState.OPEN  # 2 of 4 failed: at the 50% threshold
    assert sample("devteam_mcp_circuit_state", server="fault") == 2
    assert (
        sample("devteam_mcp_circuit_transitions_total", server="fault", state="open") == opened + 1
    )

    with pytest.raises(CircuitOpen, match=r"circuit open for another 30\.0s") as caught:
        await work()
    assert caught.value.code == "circuit_open"
    assert len(plan.calls()) == 4  # failed fast: the server was not called
    (status,) = await manager.status()
    assert (status.circuit, status.healthy) == (CircuitState.OPEN, False)

    clock.advance(30)
    await work()
    assert breaker.state is CircuitState.HALF_OPEN
    assert sample("devteam_mcp_circuit_state", server="fault") == 1
    await work()
    assert breaker.state is CircuitState.CLOSED
    assert sample("devteam_mcp_circuit_state", server="fault") == 0
    assert plan.calls() == ["ok", "ok", "hang", "hang", "ok", "ok"]


async def test_a_failed_probe_opens_the_breaker_again(
    make_manager: MakeManager, plan: FaultPlan
) -> None:
    clock = ManualClock()
    config = plan.server_config(breaker=BREAKER, call_timeout_s=0.5)
    manager = make_manager({"fault": config}, clock=clock)
    breaker = manager.breaker("fault")
    plan.set("hang", "hang", "hang", "hang", "ok", "hang")
    for _ in range(4):
        with pytest.raises(ToolUnavailable):
            await manager.call("fault", "work", {"text": "x"})
    assert breaker.state is CircuitState.OPEN
    clock.advance(30)
    await manager.call("fault", "work", {"text": "probe 1"})
    with pytest.raises(ToolUnavailable):
        await manager.call("fault", "work", {"text": "probe 2"})
    assert breaker.state is CircuitState.OPEN  # 1 of 2 probes failed
    with pytest.raises(CircuitOpen):
        await manager.call("fault", "work", {"text": "refused"})
    assert len(plan.calls()) == 6


async def test_slow_calls_open_the_breaker(make_manager: MakeManager, plan: FaultPlan) -> None:
    breaker = {
        **BREAKER,
        "minimum_number_of_calls": 2,
        "slow_call_duration_threshold_s": 0.3,
        "slow_call_rate_threshold": 100,
    }
    manager = make_manager({"fault": plan.server_config(breaker=breaker)})
    plan.set("slow:0.4", "slow:0.4")
    for _ in range(2):
        answer = await manager.call("fault", "work", {"text": "x"})
        assert not answer.is_error  # slow, but answered
    assert manager.breaker("fault").state is CircuitState.OPEN
    assert manager.breaker("fault").snapshot().slow_call_rate == 100.0


async def test_waiting_for_a_slot_or_a_session_is_not_slowness(
    make_manager: MakeManager, plan: FaultPlan
) -> None:
    breaker = {
        **BREAKER,
        "sliding_window_size": 2,
        "minimum_number_of_calls": 2,
        "slow_call_duration_threshold_s": 0.3,
        "slow_call_rate_threshold": 100,
    }
    config = plan.server_config(breaker=breaker, max_concurrent_calls=1, startup_delay=0.5)
    manager = make_manager({"fault": config})
    first = await manager.call("fault", "pid")
    assert first.duration_s > 0.5  # starting the server takes a while ...
    assert manager.breaker("fault").snapshot().slow == 0  # ... and is not the call's slowness
    plan.set("slow:0.5")
    slow = asyncio.create_task(manager.call("fault", "work", {"text": "slow"}))
    await until(lambda: plan.calls() == ["slow:0.5"])
    quick = await manager.call("fault", "echo", {"text": "quick"})  # waits ~0.5s for the slot
    await slow
    assert quick.duration_s >= 0.3
    snapshot = manager.breaker("fault").snapshot()
    assert (snapshot.calls, snapshot.slow) == (2, 1)  # the echo itself was quick
    assert manager.breaker("fault").state is CircuitState.CLOSED


async def test_the_fallback_answers_while_the_primary_is_open(
    make_manager: MakeManager, tmp_path: Path
) -> None:
    primary, backup = FaultPlan(tmp_path / "p", "primary"), FaultPlan(tmp_path / "b", "backup")
    breaker = {**BREAKER, "sliding_window_size": 2, "minimum_number_of_calls": 2}
    manager = make_manager(
        {
            "primary": primary.server_config(
                breaker=breaker,
                call_timeout_s=0.5,
                fallbacks=[{"server": "backup", "tools": {"work": "echo"}}],
            ),
            "backup": backup.server_config(),
        }
    )
    primary.set("hang", "hang")
    for text in ("one", "two"):
        answer = await manager.call("primary", "work", {"text": text})
        assert (answer.server, answer.tool, answer.fallback) == ("backup", "echo", True)
        assert answer.text == f"backup: {text}"
    assert manager.breaker("primary").state is CircuitState.OPEN
    answer = await manager.call("primary", "work", {"text": "three"})
    assert answer.text == "backup: three"
    assert primary.calls() == ["hang", "hang"]  # the open primary was not called again
    # A tool the fallback does not stand in for has nowhere to go.
    with pytest.raises(CircuitOpen):
        await manager.call("primary", "pid")


async def test_no_server_can_answer(make_manager: MakeManager) -> None:
    manager = make_manager(
        {
            "search": {
                "enabled": False,
                "transport": {"type": "stdio", "command": "unused"},
                "fallbacks": [{"server": "pages"}],
            },
            "pages": {
                "transport": {
                    "type": "stdio",
                    "command": "unused",
                    "env": {"KEY": "${DEVTEAM_TEST_NEVER_SET}"},
                },
            },
        },
        environ={},
    )
    with pytest.raises(ToolUnavailable) as caught:
        await manager.call("search", "ask", {"q": "x"})
    assert caught.value.code == "tool_unavailable"
    assert caught.value.details == [
        {"server": "search", "reason": "disabled in the configuration"},
        {"server": "pages", "reason": "not configured: DEVTEAM_TEST_NEVER_SET is not set"},
    ]
    with pytest.raises(ToolUnavailable, match="no such server"):
        await manager.call("nowhere", "x")


async def test_a_server_that_cannot_start(make_manager: MakeManager, tmp_path: Path) -> None:
    manager = make_manager(
        {"broken": {"transport": {"type": "stdio", "command": str(tmp_path / "missing")}}}
    )
    with pytest.raises(ToolUnavailable, match="cannot connect: FileNotFoundError"):
        await manager.call("broken", "x")
    (status,) = await manager.status()
    assert status.healthy is False
    assert status.last_error is not None and "FileNotFoundError" in status.last_error


async def test_calls_wait_for_a_free_slot_within_their_timeout(
    make_manager: MakeManager, plan: FaultPlan
) -> None:
    config = plan.server_config(
        max_concurrent_calls=1, call_timeout_s=0.5, tools={"work": {"timeout_s": 30}}
    )
    manager = make_manager({"fault": config})
    await manager.call("fault", "pid")  # the session is open: what follows is the calls
    plan.set("hang")
    first = asyncio.create_task(manager.call("fault", "work", {"text": "one"}))
    await until(lambda: plan.calls() == ["hang"])  # the first call holds the only slot
    with pytest.raises(ToolUnavailable, match=r"no free call slot within 0\.5s"):
        await manager.call("fault", "echo", {"text": "two"})
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    # The cancelled call gave its slot back, and recorded nothing in the breaker.
    assert (await manager.call("fault", "echo", {"text": "three"})).text == "fault: three"
    assert manager.breaker("fault").snapshot().calls == 2


async def test_the_rate_limit_is_shared_through_the_broker(
    make_manager: MakeManager, plan: FaultPlan, broker: Broker
) -> None:
    rejected = sample("devteam_rate_limit_rejections_total", scope="mcp")
    config = plan.server_config(rate_limit="2/minute", call_timeout_s=1)
    one, two = (
        make_manager({"fault": config}, broker=broker),
        make_manager({"fault": config}, broker=broker),
    )
    await one.call("fault", "work", {"text": "a"})
    await two.call("fault", "work", {"text": "b"})
    with pytest.raises(ToolUnavailable, match="rate limit 2/minute leaves no room"):
        await one.call("fault", "work", {"text": "c"})
    assert plan.calls() == ["ok", "ok"]
    assert sample("devteam_rate_limit_rejections_total", scope="mcp") == rejected + 1


@pytest.mark.parametrize("protocol", ["auto", "legacy"])
async def test_the_tool_list_is_cached_and_refreshed_on_change(
    make_manager: MakeManager, plan: FaultPlan, protocol: str
) -> None:
    manager = make_manager({"fault": plan.server_config(protocol=protocol)})
    names = {tool.name for tool in await manager.list_tools("fault")}
    assert names == {"work", "echo", "pid", "grow"}
    connection = manager.connection("fault")
    assert connection is not None
    assert connection.protocol_version == ("2026-07-28" if protocol == "auto" else "2025-11-25")
    changed = asyncio.Event()
    connection.add_tools_listener(changed.set)

    await manager.call("fault", "grow", {"tool": "quiet", "notify": False})
    assert "quiet" not in {tool.name for tool in await manager.list_tools("fault")}  # cached

    await manager.call("fault", "grow", {"tool": "loud"})
    await asyncio.wait_for(changed.wait(), 10)
    assert {"quiet", "loud"} <= {tool.name for tool in await manager.list_tools("fault")}
