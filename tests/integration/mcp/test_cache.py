"""Results of idempotent tools come from the broker cache, on memory and on Redis."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from devteam.broker.protocol import Broker
from devteam.mcp.cache import ToolResultCache, arguments_digest, canonical_arguments
from tests.fakes.faults import FaultPlan
from tests.integration.mcp.conftest import MakeManager


def hits(server: str, result: str) -> float:
    return (
        REGISTRY.get_sample_value("devteam_mcp_cache_total", {"server": server, "result": result})
        or 0.0
    )


def test_canonical_arguments_ignore_key_order() -> None:
    one = {"b": [1, {"y": 2, "x": 1}], "a": "é"}
    two = {"a": "é", "b": [1, {"x": 1, "y": 2}]}
    assert canonical_arguments(one) == canonical_arguments(two) == '{"a":"é","b":[1,{"x":1,"y":2}]}'
    assert arguments_digest(one) == arguments_digest(two)
    assert arguments_digest(one) != arguments_digest({"a": "e", "b": [1, {"x": 1, "y": 2}]})


@pytest.mark.slow
async def test_a_repeated_idempotent_call_is_served_from_the_cache(
    make_manager: MakeManager, tmp_path: Path, broker: Broker
) -> None:
    plan = FaultPlan(tmp_path / "fault")
    server = plan.server_config(tools={"work": {"idempotent": True, "cache_ttl_s": 60}})
    manager = make_manager({"fault": server}, broker=broker)
    before_hits, before_misses = hits("fault", "hit"), hits("fault", "miss")

    first = await manager.call("fault", "work", {"text": "x"})
    again = await manager.call("fault", "work", {"text": "x"})
    assert (first.cached, again.cached) == (False, True)
    assert again.text == first.text == "fault: x"
    assert again.attempts == 0
    assert plan.calls() == ["ok"]
    assert hits("fault", "hit") == before_hits + 1
    assert hits("fault", "miss") == before_misses + 1

    other = await manager.call("fault", "work", {"text": "y"})  # other arguments: a miss
    assert not other.cached
    assert plan.calls() == ["ok", "ok"]

    # Another manager on the same broker (another process) is served too.
    second_manager = make_manager({"fault": server}, broker=broker)
    assert (await second_manager.call("fault", "work", {"text": "y"})).cached

    # A call of a tool that is not idempotent retires what was cached.
    await manager.call("fault", "echo", {"text": "write"})
    assert not (await manager.call("fault", "work", {"text": "x"})).cached
    assert plan.calls() == ["ok", "ok", "ok"]


@pytest.mark.slow
async def test_errors_and_uncached_tools_always_reach_the_server(
    make_manager: MakeManager, tmp_path: Path, broker: Broker
) -> None:
    plan = FaultPlan(tmp_path / "fault")
    server = plan.server_config(
        tools={
            "work": {"idempotent": True, "cache_ttl_s": 60},
            "echo": {"idempotent": True},  # idempotent, but no TTL: not cached
        }
    )
    manager = make_manager({"fault": server}, broker=broker)
    plan.set("error")
    assert (await manager.call("fault", "work", {"text": "x"})).is_error
    answer = await manager.call("fault", "work", {"text": "x"})
    assert not answer.is_error and not answer.cached
    assert plan.calls() == ["error", "ok"]
    assert not (await manager.call("fault", "echo", {"text": "e"})).cached
    assert not (await manager.call("fault", "echo", {"text": "e"})).cached
    # echo is idempotent, so it did not retire the cache.
    assert (await manager.call("fault", "work", {"text": "x"})).cached


async def test_namespaces_and_instances_are_separate_and_invalidation_retires(
    broker: Broker,
) -> None:
    from mcp_types import CallToolResult, TextContent

    cache = ToolResultCache(broker.cache)
    result = CallToolResult(content=[TextContent(type="text", text="hi")])
    await cache.put("task-a", "ws-1", "read", {"p": 1}, result, ttl=60)
    assert await cache.get("task-a", "ws-1", "read", {"p": 1}) == result
    assert await cache.get("task-b", "ws-1", "read", {"p": 1}) is None
    assert await cache.get("task-a", "ws-2", "read", {"p": 1}) is None
    await cache.invalidate("task-a")
    assert await cache.get("task-a", "ws-1", "read", {"p": 1}) is None
