"""`config/mcp_servers.yaml`: the MCP servers agents reach their tools through.

Each server names its transport and the policies wrapped around every call to it:
timeouts, retries, a circuit breaker, concurrency and rate limits, a result cache
for idempotent tools, fallbacks, and which agent types may use which of its tools.
`defaults` holds the policies every server starts from; a server overrides any
part of them (nested sections merge key by key).

Strings in a transport may hold placeholders, resolved when the server is
started: `{workspace}` (the task's worktree: such a server runs once per task),
`{python}` (the interpreter running DevTeam) and `${VAR}` (an environment
variable; a server whose variable is unset counts as not configured).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

from limits import parse_many
from pydantic import Field, ValidationError, field_validator, model_validator

from devteam.domain.enums import AgentType
from devteam.settings._base import ConfigModel

SERVER_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
ServerName = Annotated[str, Field(pattern=SERVER_NAME_PATTERN)]
PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]
Percentage = Annotated[float, Field(gt=0, le=100)]

PLACEHOLDERS = frozenset({"workspace", "python"})
"""`{name}` placeholders a transport string may hold."""
TASK_PLACEHOLDERS = frozenset({"workspace"})
"""Placeholders only a task supplies: a server using one is started once per task."""
ALL_TOOLS = "*"

# `${VAR}` (environment) or `{name}` (placeholder); other braces are literal text.
PLACEHOLDER_PATTERN = re.compile(r"\$\{(?P<env>[A-Za-z_][A-Za-z0-9_]*)\}|\{(?P<name>[a-z_]+)\}")


class StdioTransport(ConfigModel):
    type: Literal["stdio"] = "stdio"
    command: Annotated[str, Field(min_length=1)]
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    """Added to a minimal inherited environment (PATH, HOME, …), not to the whole of ours."""
    cwd: str | None = None
    git_environment: bool = False
    """The server runs git: give it DevTeam's hardened git environment (`devteam.gitsafety`),
    naming the task's git directory and worktree (`GIT_DIR`, `GIT_WORK_TREE`)."""

    def strings(self) -> Iterator[str]:
        yield self.command
        yield from self.args
        yield from self.env.values()
        if self.cwd is not None:
            yield self.cwd


class StreamableHttpTransport(ConfigModel):
    type: Literal["streamable_http"] = "streamable_http"
    url: Annotated[str, Field(pattern=r"^https?://")]
    headers: dict[str, str] = Field(default_factory=dict)

    def strings(self) -> Iterator[str]:
        yield self.url
        yield from self.headers.values()


Transport = Annotated[StdioTransport | StreamableHttpTransport, Field(discriminator="type")]


class RetryPolicy(ConfigModel):
    """Retries of transport failures and timeouts; a tool's own error is never retried."""

    max_attempts: PositiveInt = 3
    """Attempts in all, the first included (1: no retry)."""
    initial_backoff_s: PositiveFloat = 0.2
    """Wait before the first retry; each later wait is `multiplier` times longer."""
    multiplier: Annotated[float, Field(ge=1)] = 2.0
    max_backoff_s: PositiveFloat = 5.0
    jitter_s: Annotated[float, Field(ge=0)] = 0.2
    """A random extra wait of up to this many seconds, so clients do not retry in step."""

    @model_validator(mode="after")
    def _backoff_order(self) -> RetryPolicy:
        if self.max_backoff_s < self.initial_backoff_s:
            raise ValueError("max_backoff_s must be at least initial_backoff_s")
        return self


class BreakerPolicy(ConfigModel):
    """A count-based circuit breaker with resilience4j's semantics and defaults.

    Closed, it records the outcome of the last `sliding_window_size` calls; once
    `minimum_number_of_calls` are recorded, a failure rate or slow-call rate at or
    above its threshold opens it. Open, calls fail fast (or go to a fallback) for
    `wait_duration_in_open_state_s`; then it lets
    `permitted_number_of_calls_in_half_open_state` probe calls through and closes
    when their rates are below the thresholds, or opens again.
    """

    sliding_window_size: PositiveInt = 100
    minimum_number_of_calls: PositiveInt = 100
    failure_rate_threshold: Percentage = 50.0
    """Percent of recorded calls that failed (transport failure or timeout)."""
    slow_call_duration_threshold_s: PositiveFloat = 60.0
    slow_call_rate_threshold: Percentage = 100.0
    """Percent of recorded calls slower than `slow_call_duration_threshold_s`."""
    wait_duration_in_open_state_s: PositiveFloat = 60.0
    permitted_number_of_calls_in_half_open_state: PositiveInt = 10

    @model_validator(mode="after")
    def _window_holds_minimum(self) -> BreakerPolicy:
        if self.minimum_number_of_calls > self.sliding_window_size:
            raise ValueError("minimum_number_of_calls must not exceed sliding_window_size")
        return self


class ServerPolicy(ConfigModel):
    """What is wrapped around each call to a server; `defaults` and every server have it."""

    connect_timeout_s: PositiveFloat = 30.0
    """Starting the server (or reaching it) and the MCP handshake."""
    call_timeout_s: PositiveFloat = 60.0
    """One tool call; a tool's own `timeout_s` overrides it."""
    retry: RetryPolicy = RetryPolicy()
    breaker: BreakerPolicy = BreakerPolicy()
    max_concurrent_calls: PositiveInt = 8
    """Calls in flight to this server from one process; more wait for a free slot."""
    rate_limit: str | None = None
    """e.g. `60/minute`, shared by every process on the broker; a call over it waits."""

    @field_validator("rate_limit")
    @classmethod
    def _valid_rate_limit(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parse_many(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit like '60/minute': {value!r}") from exc
        return value


POLICY_KEYS = frozenset(ServerPolicy.model_fields)


class ToolPolicy(ConfigModel):
    """Settings of one tool of a server, by the tool's name."""

    idempotent: bool = False
    """Calling it again with the same arguments gives the same answer and changes nothing."""
    cache_ttl_s: PositiveFloat | None = None
    """Serve repeated calls from the cache for this long (idempotent tools only)."""
    timeout_s: PositiveFloat | None = None

    @model_validator(mode="after")
    def _cache_only_idempotent(self) -> ToolPolicy:
        if self.cache_ttl_s is not None and not self.idempotent:
            raise ValueError("cache_ttl_s needs idempotent: true")
        return self


class FallbackConfig(ConfigModel):
    """Where calls go when this server cannot answer (disabled, open circuit, down)."""

    server: ServerName
    tools: dict[str, str] | None = None
    """This server's tool -> the fallback's tool. Unset: the fallback stands in for the
    whole server, tool for tool under the same names."""


class McpServerConfig(ServerPolicy):
    enabled: bool = True
    description: str = ""
    protocol: Literal["auto", "legacy"] = "auto"
    """`auto` negotiates the newest protocol the server speaks; `legacy` forces the
    initialize handshake of the 2025 protocol versions."""
    transport: Transport
    tools: dict[Annotated[str, Field(min_length=1)], ToolPolicy] = Field(default_factory=dict)
    fallbacks: list[FallbackConfig] = Field(default_factory=list)
    agents: dict[AgentType, list[Annotated[str, Field(min_length=1)]]] = Field(default_factory=dict)
    """Agent type -> the tools of this server it may use (`*`: all of them)."""

    @model_validator(mode="after")
    def _known_placeholders(self) -> McpServerConfig:
        for text in self.transport.strings():
            for match in PLACEHOLDER_PATTERN.finditer(text):
                name = match.group("name")
                if name is not None and name not in PLACEHOLDERS:
                    known = ", ".join(f"{{{p}}}" for p in sorted(PLACEHOLDERS))
                    raise ValueError(f"unknown placeholder {{{name}}} (known: {known})")
        return self

    @property
    def placeholders(self) -> frozenset[str]:
        """The `{name}` placeholders its transport uses."""
        return frozenset(
            name
            for text in self.transport.strings()
            for match in PLACEHOLDER_PATTERN.finditer(text)
            if (name := match.group("name")) is not None
        )

    @property
    def per_task(self) -> bool:
        """Started once per task, because the transport needs a task's values."""
        return bool(self.placeholders & TASK_PLACEHOLDERS)

    def tool(self, name: str) -> ToolPolicy:
        return self.tools.get(name) or ToolPolicy()

    def timeout_for(self, tool: str) -> float:
        return self.tool(tool).timeout_s or self.call_timeout_s


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override` over `base`, merging nested mappings key by key."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = _merge(current, value)
        else:
            merged[key] = value
    return merged


class McpServersConfig(ConfigModel):
    defaults: ServerPolicy = ServerPolicy()
    """Policies every server starts from."""
    servers: dict[ServerName, McpServerConfig] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _apply_defaults(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        defaults, servers = data.get("defaults"), data.get("servers")
        if not isinstance(defaults, Mapping) or not isinstance(servers, Mapping):
            return data
        try:
            ServerPolicy.model_validate(defaults)
        except ValidationError:
            # Reported once, under `defaults`, rather than again under every server.
            return data
        policy = {k: v for k, v in defaults.items() if k in POLICY_KEYS}
        merged = {
            name: _merge(policy, server) if isinstance(server, Mapping) else server
            for name, server in servers.items()
        }
        return {**data, "servers": merged}

    @field_validator("servers")
    @classmethod
    def _fallbacks_exist(cls, servers: dict[str, McpServerConfig]) -> dict[str, McpServerConfig]:
        for name, server in servers.items():
            for fallback in server.fallbacks:
                if fallback.server == name:
                    raise ValueError(f"{name}.fallbacks: a server cannot fall back to itself")
                if fallback.server not in servers:
                    raise ValueError(f"{name}.fallbacks: no server named {fallback.server!r}")
        return servers
