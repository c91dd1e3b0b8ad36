"""config/mcp_servers.yaml: the shipped file, defaults merging, and refused values."""

from __future__ import annotations

from pathlib import Path

import pytest

from devteam.domain.enums import AgentType
from devteam.domain.errors import ConfigError
from devteam.mcp.errors import ServerUnavailable
from devteam.mcp.registry import McpRegistry, ToolGrant
from devteam.settings import load_config
from devteam.settings.mcp_servers import McpServersConfig

REPO = Path(__file__).resolve().parents[3]


def shipped() -> McpServersConfig:
    return load_config(REPO / "config").mcp_servers


def test_shipped_servers() -> None:
    servers = shipped().servers
    assert list(servers) == ["workspace", "sandbox", "git", "serena", "perplexity", "fetch"]
    assert servers["workspace"].enabled and servers["workspace"].per_task
    assert servers["sandbox"].enabled and servers["sandbox"].per_task
    assert servers["sandbox"].retry.max_attempts == 1, "a command is never run twice"
    assert servers["git"].enabled and servers["git"].per_task
    assert "--repository" in servers["git"].transport.model_dump()["args"]
    for name in ("serena", "perplexity", "fetch"):
        assert not servers[name].enabled
        assert servers[name].transport.model_dump()["command"] == "uvx"
    assert [f.server for f in servers["perplexity"].fallbacks] == ["fetch"]


def test_shipped_breaker_defaults_are_resilience4j_defaults() -> None:
    breaker = shipped().servers["workspace"].breaker
    assert breaker.sliding_window_size == 100
    assert breaker.minimum_number_of_calls == 100
    assert breaker.failure_rate_threshold == 50
    assert breaker.slow_call_duration_threshold_s == 60
    assert breaker.slow_call_rate_threshold == 100
    assert breaker.wait_duration_in_open_state_s == 60
    assert breaker.permitted_number_of_calls_in_half_open_state == 10


def test_shipped_grants() -> None:
    registry = McpRegistry(shipped())
    assert registry.grants(AgentType.RESEARCH) == [ToolGrant("perplexity", None)]
    analyzer = {grant.server: grant for grant in registry.grants(AgentType.CODEBASE_ANALYZER)}
    assert set(analyzer) == {"workspace", "git", "serena"}
    assert analyzer["workspace"].allows("read_file")
    assert not analyzer["workspace"].allows("write_file")
    backend = {grant.server: grant for grant in registry.grants(AgentType.BACKEND)}
    assert backend["workspace"].allows("write_file")
    assert backend["sandbox"].allows("run_command")
    assert "sandbox" not in analyzer


def test_server_sections_merge_over_defaults() -> None:
    config = McpServersConfig.model_validate(
        {
            "defaults": {"call_timeout_s": 5, "breaker": {"failure_rate_threshold": 20}},
            "servers": {
                "a": {
                    "transport": {"type": "stdio", "command": "x"},
                    "breaker": {"sliding_window_size": 10, "minimum_number_of_calls": 5},
                },
                "b": {"transport": {"type": "stdio", "command": "x"}, "call_timeout_s": 7},
            },
        }
    )
    a, b = config.servers["a"], config.servers["b"]
    assert a.call_timeout_s == 5
    assert a.breaker.failure_rate_threshold == 20  # from defaults
    assert a.breaker.sliding_window_size == 10  # its own
    assert a.breaker.wait_duration_in_open_state_s == 60  # the built-in default
    assert b.call_timeout_s == 7


def test_tool_timeout_overrides_the_call_timeout() -> None:
    config = McpServersConfig.model_validate(
        {
            "servers": {
                "a": {
                    "transport": {"type": "stdio", "command": "x"},
                    "call_timeout_s": 9,
                    "tools": {"slow": {"timeout_s": 99}},
                }
            }
        }
    )
    assert config.servers["a"].timeout_for("slow") == 99
    assert config.servers["a"].timeout_for("other") == 9


BAD = [
    (
        "servers:\n  a:\n    transport: {type: stdio, command: x}\n    retries: 3\n",
        "servers.a.retries: unknown key",
    ),
    (
        "servers:\n  a:\n    transport: {type: stdio, command: x}\n"
        "    breaker: {sliding_windw_size: 3}\n",
        "servers.a.breaker.sliding_windw_size: unknown key",
    ),
    (
        "defaults:\n  breaker: {failure_rate_threshold: 150}\n",
        "defaults.breaker.failure_rate_threshold: Input should be less than or equal to 100",
    ),
    (
        "servers:\n  a:\n    transport: {type: stdio, command: x}\n    call_timeout_s: 0\n",
        "servers.a.call_timeout_s: Input should be greater than 0",
    ),
    (
        "servers:\n  a:\n    transport: {type: stdio, command: x}\n"
        "    breaker: {sliding_window_size: 5, minimum_number_of_calls: 6}\n",
        "minimum_number_of_calls must not exceed sliding_window_size",
    ),
    (
        "servers:\n  a:\n    transport: {type: stdio, command: x}\n    rate_limit: lots\n",
        "servers.a.rate_limit: not a rate limit",
    ),
    (
        "servers:\n  a:\n    transport: {type: stdio, command: x}\n"
        "    tools: {write: {cache_ttl_s: 10}}\n",
        "servers.a.tools.write: cache_ttl_s needs idempotent: true",
    ),
    (
        "servers:\n  a:\n    transport: {type: stdio, command: x, args: ['{worktree}']}\n",
        "unknown placeholder {worktree}",
    ),
    (
        "servers:\n  a:\n    transport: {type: stdio, command: x}\n    fallbacks: [{server: b}]\n",
        "servers: a.fallbacks: no server named 'b'",
    ),
    (
        "servers:\n  a:\n    transport: {type: stdio, command: x}\n    fallbacks: [{server: a}]\n",
        "a.fallbacks: a server cannot fall back to itself",
    ),
    (
        "servers:\n  a:\n    transport: {type: stdio, command: x}\n    agents: {designer: ['*']}\n",
        "servers.a.agents.designer",
    ),
    ("servers:\n  a:\n    transport: {type: http, url: 'http://x'}\n", "servers.a.transport"),
    ("servers:\n  Bad Name:\n    transport: {type: stdio, command: x}\n", "servers.Bad Name"),
    (
        "servers:\n  a:\n    transport: {type: streamable_http, url: 'ftp://x'}\n",
        "servers.a.transport.streamable_http.url",
    ),
    (
        "servers:\n  a:\n    transport: {type: stdio, command: x}\n    protocol: v3\n",
        "servers.a.protocol: Input should be 'auto' or 'legacy'",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    BAD,
    ids=[
        "unknown-key",
        "unknown-nested-key",
        "bad-default",
        "zero-timeout",
        "window-minimum",
        "rate-limit",
        "cache-not-idempotent",
        "placeholder",
        "fallback-unknown",
        "fallback-self",
        "agent-type",
        "transport-type",
        "server-name",
        "url-scheme",
        "protocol",
    ],
)
def test_bad_value_is_refused_in_one_line(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "mcp_servers.yaml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    message = caught.value.message
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'mcp_servers.yaml'}: ")
    assert expected in message


def test_a_bad_default_is_reported_once(tmp_path: Path) -> None:
    (tmp_path / "mcp_servers.yaml").write_text(
        "defaults:\n  call_timeout_s: -1\n"
        "servers:\n  a:\n    transport: {type: stdio, command: x}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert caught.value.message.count("call_timeout_s") == 1


def make_registry(transport: dict[str, object], **extra: object) -> McpRegistry:
    return McpRegistry(
        McpServersConfig.model_validate({"servers": {"s": {"transport": transport, **extra}}})
    )


def test_placeholders_resolve_per_instance() -> None:
    spec = make_registry(
        {"type": "stdio", "command": "{python}", "args": ["--root", "{workspace}", '{"k": 1}']},
    ).get("s")
    assert spec.per_task
    one = spec.instantiate({"workspace": "/w/one"}, environ={})
    two = spec.instantiate({"workspace": "/w/two"}, environ={})
    assert one.transport.model_dump()["args"] == ["--root", "/w/one", '{"k": 1}']
    assert one.key != two.key
    assert one.key == spec.instantiate({"workspace": "/w/one"}, environ={}).key


def test_a_task_placeholder_needs_a_task() -> None:
    spec = make_registry({"type": "stdio", "command": "x", "args": ["{workspace}"]}).get("s")
    with pytest.raises(ServerUnavailable, match=r"needs \{workspace\}"):
        spec.instantiate({}, environ={})


def test_environment_variables_resolve_or_leave_the_server_unconfigured() -> None:
    spec = make_registry(
        {
            "type": "streamable_http",
            "url": "https://api.example/mcp",
            "headers": {"Authorization": "Bearer ${EXAMPLE_TOKEN}"},
        }
    ).get("s")
    assert not spec.per_task
    resolved = spec.instantiate({}, environ={"EXAMPLE_TOKEN": "abc"})
    assert resolved.transport.model_dump()["headers"] == {"Authorization": "Bearer abc"}
    with pytest.raises(ServerUnavailable, match="not configured: EXAMPLE_TOKEN is not set"):
        spec.instantiate({}, environ={})


def test_a_disabled_server_is_unavailable() -> None:
    spec = make_registry({"type": "stdio", "command": "x"}, enabled=False).get("s")
    with pytest.raises(ServerUnavailable, match="disabled"):
        spec.instantiate({}, environ={})


def test_fallback_tool_mapping() -> None:
    registry = McpRegistry(
        McpServersConfig.model_validate(
            {
                "servers": {
                    "a": {
                        "transport": {"type": "stdio", "command": "x"},
                        "fallbacks": [
                            {"server": "b", "tools": {"search": "lookup"}},
                            {"server": "c"},
                        ],
                    },
                    "b": {"transport": {"type": "stdio", "command": "x"}},
                    "c": {"transport": {"type": "stdio", "command": "x"}},
                }
            }
        )
    )
    spec = registry.get("a")
    assert [(f.server, t) for f, t in spec.fallbacks_for("search")] == [
        ("b", "lookup"),
        ("c", "search"),
    ]
    assert [(f.server, t) for f, t in spec.fallbacks_for("read")] == [("c", "read")]
    with pytest.raises(ServerUnavailable, match="no such server"):
        registry.get("nope")
