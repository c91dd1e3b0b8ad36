"""The configured MCP servers: who they are, how to start them, who may use what."""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from devteam.domain.enums import AgentType
from devteam.gitsafety import hardened_environment
from devteam.mcp.errors import ServerUnavailable
from devteam.settings.mcp_servers import (
    ALL_TOOLS,
    PLACEHOLDER_PATTERN,
    FallbackConfig,
    McpServerConfig,
    McpServersConfig,
    StdioTransport,
    StreamableHttpTransport,
)

ResolvedTransport = StdioTransport | StreamableHttpTransport


@dataclass(frozen=True, slots=True)
class ToolGrant:
    """Tools of one server an agent type may use."""

    server: str
    tools: frozenset[str] | None
    """Tool names, or None for every tool the server lists."""

    def allows(self, tool: str) -> bool:
        return self.tools is None or tool in self.tools


@dataclass(frozen=True, slots=True)
class ServerInstance:
    """A configured server with its placeholders resolved: one process or endpoint."""

    server: str
    """The configured name: breaker, limits and metrics are keyed by it."""
    transport: ResolvedTransport
    key: str
    """Tells instances of one server apart (e.g. one per task worktree)."""


@dataclass(frozen=True, slots=True)
class ServerSpec:
    name: str
    config: McpServerConfig

    @property
    def per_task(self) -> bool:
        return self.config.per_task

    def fallbacks_for(self, tool: str) -> Iterator[tuple[FallbackConfig, str]]:
        """(fallback, the fallback's tool) for each fallback that can answer `tool`."""
        for fallback in self.config.fallbacks:
            if fallback.tools is None:
                yield fallback, tool
            elif tool in fallback.tools:
                yield fallback, fallback.tools[tool]

    def instantiate(
        self, values: Mapping[str, str], environ: Mapping[str, str] | None = None
    ) -> ServerInstance:
        """Resolve the transport's placeholders; `ServerUnavailable` when one has no value."""
        if not self.config.enabled:
            raise ServerUnavailable(self.name, "disabled in the configuration")
        environment = os.environ if environ is None else environ
        known = {"python": sys.executable, **values}
        transport = self.config.transport

        def resolve(text: str) -> str:
            return _substitute(self.name, text, known, environment)

        resolved: ResolvedTransport
        if isinstance(transport, StdioTransport):
            env = {key: resolve(value) for key, value in transport.env.items()}
            if transport.git_environment:
                # Ours first: the configuration may add to it, but a task's git
                # directory and worktree are the ones DevTeam made.
                env = hardened_environment() | env | _git_location(self.name, known)
            resolved = transport.model_copy(
                update={
                    "command": resolve(transport.command),
                    "args": [resolve(arg) for arg in transport.args],
                    "env": env,
                    "cwd": None if transport.cwd is None else resolve(transport.cwd),
                }
            )
        else:
            resolved = transport.model_copy(
                update={
                    "url": resolve(transport.url),
                    "headers": {key: resolve(value) for key, value in transport.headers.items()},
                }
            )
        digest = hashlib.sha256(resolved.model_dump_json().encode()).hexdigest()[:16]
        return ServerInstance(server=self.name, transport=resolved, key=digest)


def _git_location(server: str, values: Mapping[str, str]) -> dict[str, str]:
    """`GIT_DIR` and `GIT_WORK_TREE` of a task scope; a server running git needs both."""
    if "git_dir" not in values or "workspace" not in values:
        raise ServerUnavailable(server, "runs git: use it from a task scope with a git directory")
    return {"GIT_DIR": values["git_dir"], "GIT_WORK_TREE": values["workspace"]}


def _substitute(
    server: str, text: str, values: Mapping[str, str], environ: Mapping[str, str]
) -> str:
    def replace(match: re.Match[str]) -> str:
        if (variable := match.group("env")) is not None:
            value = environ.get(variable)
            if not value:
                raise ServerUnavailable(server, f"not configured: {variable} is not set")
            return value
        name = match.group("name")
        if name not in values:
            raise ServerUnavailable(server, f"needs {{{name}}}: use it from a task scope")
        return values[name]

    return PLACEHOLDER_PATTERN.sub(replace, text)


class McpRegistry:
    """The servers of `config/mcp_servers.yaml`, by name, in file order."""

    def __init__(self, config: McpServersConfig) -> None:
        self.config = config
        self._specs = {name: ServerSpec(name, server) for name, server in config.servers.items()}

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[ServerSpec]:
        return iter(self._specs.values())

    def get(self, name: str) -> ServerSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise ServerUnavailable(name, "no such server in the configuration") from None

    def grants(self, agent_type: AgentType) -> list[ToolGrant]:
        """What `agent_type` may use, server by server in file order (disabled ones too)."""
        grants = []
        for spec in self._specs.values():
            tools = spec.config.agents.get(agent_type)
            if tools:
                grants.append(
                    ToolGrant(spec.name, None if ALL_TOOLS in tools else frozenset(tools))
                )
        return grants
