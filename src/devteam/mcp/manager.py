"""`McpManager`: every configured server, reached through its resilience layers.

One manager per process (on `Services.mcp`). It opens nothing up front: a
server's session starts on its first call and stays open until shutdown.
Servers whose transport needs a task's values (`{workspace}`) are started per
task, inside a `TaskScope` that closes them when the task ends; their breaker,
limits, metrics and status are still those of the configured server name.

Around each server instance the calls pass, outermost first:

    CachedCaller       serve idempotent tools from the broker cache; writes retire it
    RetryingCaller     retry transport failures and timeouts, backoff with jitter
    InstrumentedCaller metrics, logs and health, once per attempt
    BreakerCaller      the server's circuit breaker (an open one refuses at once)
    ThrottledCaller    concurrency slots (per process) and rate limit (shared)
    McpConnection      the long-lived session, with the call timeout

and `call()` adds the fallbacks: when a server cannot answer (disabled, not
configured, open circuit, down after retries), the configured fallbacks are tried
in order; when none can, `ToolUnavailable` (or `CircuitOpen`) says so.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TextIO

from mcp_types import CallToolResult, TextContent, Tool
from pydantic import BaseModel, ConfigDict

from devteam.broker.protocol import Broker
from devteam.domain.enums import AgentType
from devteam.mcp.breaker import BreakerCaller, CircuitBreaker, CircuitState, Clock
from devteam.mcp.cache import CachedCaller, ToolResultCache
from devteam.mcp.caller import ToolCaller, tracing
from devteam.mcp.connection import McpConnection
from devteam.mcp.errors import (
    UNAVAILABLE_ERRORS,
    CallNotPermitted,
    CircuitOpen,
    McpCallError,
    ProtocolError,
    ServerUnavailable,
    ToolCallFailed,
    ToolUnavailable,
)
from devteam.mcp.instrumented import (
    InstrumentedCaller,
    ServerHealth,
    record_retry,
    record_transition,
)
from devteam.mcp.registry import McpRegistry, ServerSpec
from devteam.mcp.retry import RetryingCaller
from devteam.mcp.throttle import RateLimit, ThrottledCaller
from devteam.observability import tracing as otel
from devteam.observability.logging import get_logger
from devteam.observability.metrics import (
    MCP_CACHE,
    MCP_CIRCUIT_STATE,
    MCP_CIRCUIT_TRANSITIONS,
    MCP_RETRIES,
)
from devteam.settings.mcp_servers import McpServersConfig

if TYPE_CHECKING:
    from devteam.mcp.toolset import McpToolset, ToolCallObserver

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The answer to one `McpManager.call`."""

    result: CallToolResult
    """The MCP result as the server sent it; `is_error` marks the tool's own error."""
    server: str
    """The server that answered: the one asked, or a fallback."""
    tool: str
    requested_server: str
    requested_tool: str
    cached: bool
    """Served from the result cache."""
    attempts: int
    """Calls that reached the server; more than one when some were retried."""
    duration_s: float

    @property
    def is_error(self) -> bool:
        return self.result.is_error

    @property
    def fallback(self) -> bool:
        """Answered by a fallback because the requested server could not."""
        return self.server != self.requested_server

    @property
    def text(self) -> str:
        """The text blocks of the answer, joined."""
        return "\n".join(
            block.text for block in self.result.content if isinstance(block, TextContent)
        )

    @property
    def structured(self) -> Any:
        """The structured answer (a tool returning a plain value has it under `result`)."""
        content = self.result.structured_content
        if isinstance(content, dict) and set(content) == {"result"}:
            return content["result"]
        return content


class ServerStatus(BaseModel):
    """One server in `GET /api/v1/mcp/servers`."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    name: str
    """The server's name in `config/mcp_servers.yaml`."""
    transport: Literal["stdio", "streamable_http"]
    """How it is reached: a local process (`stdio`) or over HTTP."""
    enabled: bool
    """False while the server is switched off in the configuration."""
    circuit: CircuitState
    """The circuit breaker: `closed` (calls go through), `open` or `half_open`."""
    healthy: bool | None
    """The last contact worked (True) or failed (False); None: not contacted yet."""
    tools: list[str]
    """The tools it lists."""
    last_error: str | None
    """The latest failure talking to it, if any."""


@dataclass
class _Guards:
    """What all instances of one configured server share."""

    breaker: CircuitBreaker
    slots: asyncio.Semaphore
    rate_limit: RateLimit | None
    health: ServerHealth = field(default_factory=ServerHealth)


@dataclass
class _Instance:
    connection: McpConnection
    caller: ToolCaller


class TaskScope:
    """The MCP servers of one task: per-task servers start here and stop with it.

    Use as `async with manager.task_scope(worktree) as scope:`; calls and toolsets
    made through the scope reach per-task servers rooted in `workspace` and the
    shared servers alike.
    """

    def __init__(
        self, manager: McpManager, workspace: Path, scope_id: str, git_dir: Path | None = None
    ) -> None:
        self.manager = manager
        self.workspace = workspace
        self.id = scope_id
        self.git_dir = git_dir
        """The git directory of `workspace` that servers running git are pinned to."""
        self.values = {"workspace": str(workspace)}
        if git_dir is not None:
            self.values["git_dir"] = str(git_dir)
        self._instances: dict[str, _Instance] = {}
        self._closed = False

    @property
    def cache_namespace(self) -> str:
        return f"task-{self.id}"

    async def call(self, server: str, tool: str, arguments: Mapping[str, Any]) -> ToolResult:
        return await self.manager.call(server, tool, arguments, scope=self)

    async def list_tools(self, server: str) -> list[Tool]:
        return await self.manager.list_tools(server, scope=self)

    def toolset(
        self, agent_type: AgentType, *, observer: ToolCallObserver | None = None
    ) -> McpToolset:
        return self.manager.toolset(agent_type, scope=self, observer=observer)

    async def forget_cached_results(self) -> None:
        """Retire what this task's servers cached, after changing its files another way."""
        await self.manager._cache.invalidate(self.cache_namespace)

    def connection(self, server: str) -> McpConnection | None:
        """The session of a per-task server, once it was used."""
        instance = self._instances.get(server)
        return None if instance is None else instance.connection

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        instances, self._instances = list(self._instances.values()), {}
        await asyncio.gather(*(i.connection.close() for i in instances), return_exceptions=True)
        self.manager._scopes.discard(self)

    async def __aenter__(self) -> TaskScope:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class McpManager:
    def __init__(
        self,
        config: McpServersConfig,
        broker: Broker,
        *,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        errlog: TextIO | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.registry = McpRegistry(config)
        self._broker = broker
        self._cache = ToolResultCache(broker.cache)
        self._clock = clock
        self._sleep = sleep
        self._errlog = errlog
        self._environ = environ
        self._guards: dict[str, _Guards] = {}
        self._shared: dict[str, _Instance] = {}
        self._scopes: set[TaskScope] = set()
        self._closed = False
        for spec in self.registry:
            MCP_CIRCUIT_STATE.labels(server=spec.name).set(CircuitState.CLOSED.gauge_value)
            # Exported at 0 from the start, so a dashboard shows "no retries", not "no data".
            MCP_RETRIES.labels(server=spec.name)
            for state in CircuitState:
                MCP_CIRCUIT_TRANSITIONS.labels(server=spec.name, state=state.value)
            for result in ("hit", "miss"):
                MCP_CACHE.labels(server=spec.name, result=result)

    # -- calls -------------------------------------------------------------

    async def call(
        self,
        server: str,
        tool: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        scope: TaskScope | None = None,
    ) -> ToolResult:
        """Call `tool` on `server`, or on a fallback when `server` cannot answer.

        Each call is a span (`mcp <server>.<tool>`) when tracing is on.
        """
        with otel.span(f"mcp {server}.{tool}", mcp_server=server, mcp_tool=tool):
            return await self._call(server, tool, arguments, scope=scope)

    async def _call(
        self,
        server: str,
        tool: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        scope: TaskScope | None = None,
    ) -> ToolResult:
        """Call `tool` on `server`, or on a fallback when `server` cannot answer.

        Returns the answer, also a tool's error answer (`result.is_error`). Raises
        `ToolUnavailable` when no server could answer, `CircuitOpen` (a kind of
        `ToolUnavailable`) when the server's breaker refused the call and it has
        no fallback, `ToolCallFailed` when the server refused the request.
        """
        args = dict(arguments or {})
        started = time.perf_counter()
        failures: list[McpCallError] = []
        for index, (spec, candidate_tool) in enumerate(self._candidates(server, tool, failures)):
            with tracing() as trace:
                try:
                    instance = self._instance(spec, scope)
                    if index > 0 and not await self._offers(instance, candidate_tool):
                        failures.append(
                            ServerUnavailable(spec.name, f"has no tool {candidate_tool!r}")
                        )
                        continue
                    result = await instance.caller.call_tool(candidate_tool, args)
                except UNAVAILABLE_ERRORS as exc:
                    failures.append(exc)
                    continue
                except ProtocolError as exc:
                    raise ToolCallFailed(str(exc)) from None
            answer = ToolResult(
                result=result,
                server=spec.name,
                tool=candidate_tool,
                requested_server=server,
                requested_tool=tool,
                cached=trace.cached,
                attempts=trace.attempts,
                duration_s=time.perf_counter() - started,
            )
            if answer.fallback:
                log.info(
                    "mcp call answered by fallback",
                    server=server,
                    tool=tool,
                    fallback=spec.name,
                    because="; ".join(str(f) for f in failures),
                )
            return answer
        raise self._unavailable(server, tool, failures)

    async def list_tools(self, server: str, *, scope: TaskScope | None = None) -> list[Tool]:
        """The server's tools (cached until it says they changed); `ToolUnavailable` if down."""
        try:
            return await self._list(self._instance(self.registry.get(server), scope))
        except UNAVAILABLE_ERRORS as exc:
            raise self._unavailable(server, "tools/list", [exc]) from None
        except ProtocolError as exc:
            raise ToolCallFailed(str(exc)) from None

    def task_scope(
        self,
        workspace: Path | str,
        *,
        git_dir: Path | str | None = None,
        scope_id: str | None = None,
    ) -> TaskScope:
        """A scope for one task whose per-task servers are rooted in `workspace`.

        Servers that run git are pinned to `git_dir` (pass the one DevTeam made for
        a worktree); without it, to the git directory `workspace/.git` names now,
        before anything in the task could change it.
        """
        if self._closed:
            raise ToolUnavailable("the MCP manager is closed")
        root = Path(workspace).resolve()
        pinned = Path(git_dir).resolve() if git_dir is not None else git_dir_of(root)
        scope = TaskScope(self, root, scope_id or uuid.uuid4().hex[:12], pinned)
        self._scopes.add(scope)
        return scope

    def toolset(
        self,
        agent_type: AgentType,
        *,
        scope: TaskScope | None = None,
        observer: ToolCallObserver | None = None,
    ) -> McpToolset:
        """The tools `agent_type` may use, as a pydantic-ai toolset."""
        from devteam.mcp.toolset import McpToolset

        return McpToolset(self, agent_type, scope=scope, observer=observer)

    # -- status --------------------------------------------------------------

    def breaker(self, server: str) -> CircuitBreaker:
        return self._guards_for(self.registry.get(server)).breaker

    def connection(self, server: str) -> McpConnection | None:
        """The session of a shared server, once it was used (per-task ones: `TaskScope`)."""
        instance = self._shared.get(server)
        return None if instance is None else instance.connection

    async def check_health(self, server: str) -> bool:
        """Contact a shared server now (opening its session) and record how it went."""
        spec = self.registry.get(server)
        guards = self._guards_for(spec)
        try:
            instance = self._instance(spec, None)
            tools = await instance.connection.list_tools()
        except McpCallError as exc:
            guards.health.failed(exc.reason)
            return False
        guards.health.succeeded()
        guards.health.tools = [tool.name for tool in tools]
        return True

    async def status(self, *, probe: bool = False) -> list[ServerStatus]:
        """Every configured server; `probe` first contacts the enabled shared ones."""
        if probe:
            await asyncio.gather(
                *(
                    self.check_health(spec.name)
                    for spec in self.registry
                    if spec.config.enabled and not spec.per_task
                )
            )
        statuses = []
        for spec in self.registry:
            guards = self._guards.get(spec.name)
            circuit = guards.breaker.state if guards else CircuitState.CLOSED
            health = guards.health if guards else ServerHealth()
            tools = list(health.tools)
            if not tools and (connection := self.connection(spec.name)) is not None:
                tools = [tool.name for tool in connection.known_tools or []]
            healthy = health.healthy
            if not spec.config.enabled or circuit is CircuitState.OPEN:
                healthy = False
            statuses.append(
                ServerStatus(
                    name=spec.name,
                    transport=spec.config.transport.type,
                    enabled=spec.config.enabled,
                    circuit=circuit,
                    healthy=healthy,
                    tools=tools,
                    last_error=health.last_error,
                )
            )
        return statuses

    async def close(self) -> None:
        """Close every session, shared and per task."""
        self._closed = True
        shared, self._shared = list(self._shared.values()), {}
        scopes = list(self._scopes)
        await asyncio.gather(
            *(instance.connection.close() for instance in shared),
            *(scope.close() for scope in scopes),
            return_exceptions=True,
        )

    # -- internals -------------------------------------------------------------

    def _candidates(
        self, server: str, tool: str, failures: list[McpCallError]
    ) -> list[tuple[ServerSpec, str]]:
        try:
            spec = self.registry.get(server)
        except ServerUnavailable as exc:
            failures.append(exc)
            return []
        candidates = [(spec, tool)]
        for fallback, fallback_tool in spec.fallbacks_for(tool):
            candidates.append((self.registry.get(fallback.server), fallback_tool))
        return candidates

    async def _offers(self, instance: _Instance, tool: str) -> bool:
        """Whether a fallback lists `tool` (one that cannot even list it does not)."""
        try:
            return any(t.name == tool for t in await self._list(instance))
        except ProtocolError:
            return False

    async def _list(self, instance: _Instance) -> list[Tool]:
        fresh = instance.connection.fresh_tools
        return fresh if fresh is not None else await instance.caller.list_tools()

    def _unavailable(self, server: str, tool: str, failures: list[McpCallError]) -> ToolUnavailable:
        details = [{"server": f.server, "reason": f.reason} for f in failures]
        if len(failures) == 1 and isinstance(failures[0], CallNotPermitted):
            return CircuitOpen(f"{server}: {failures[0].reason}", details=details)
        reasons = "; ".join(f"{f.server}: {f.reason}" for f in failures) or "no server"
        return ToolUnavailable(
            f"no server could answer {server}.{tool} ({reasons})", details=details
        )

    def _guards_for(self, spec: ServerSpec) -> _Guards:
        if (guards := self._guards.get(spec.name)) is None:
            config = spec.config
            rate_limit = None
            if config.rate_limit is not None:
                storage = self._broker.rate_limit_storage()
                rate_limit = RateLimit(storage, config.rate_limit, key=spec.name)
            guards = self._guards[spec.name] = _Guards(
                breaker=CircuitBreaker(
                    spec.name, config.breaker, clock=self._clock, on_transition=record_transition
                ),
                slots=asyncio.Semaphore(config.max_concurrent_calls),
                rate_limit=rate_limit,
            )
        return guards

    def _instance(self, spec: ServerSpec, scope: TaskScope | None) -> _Instance:
        if spec.per_task:
            if scope is None:
                raise ServerUnavailable(spec.name, "runs per task: call it through a task scope")
            if scope._closed:
                raise ServerUnavailable(spec.name, "the task scope is closed")
            if (instance := scope._instances.get(spec.name)) is None:
                instance = scope._instances[spec.name] = self._build(
                    spec, scope.values, scope.cache_namespace
                )
            return instance
        if self._closed:
            raise ServerUnavailable(spec.name, "the MCP manager is closed")
        if (instance := self._shared.get(spec.name)) is None:
            instance = self._shared[spec.name] = self._build(spec, {}, f"server-{spec.name}")
        return instance

    def _build(self, spec: ServerSpec, values: Mapping[str, str], namespace: str) -> _Instance:
        config = spec.config
        guards = self._guards_for(spec)
        try:
            resolved = spec.instantiate(values, self._environ)
        except ServerUnavailable as exc:
            guards.health.last_error = exc.reason
            raise
        connection = McpConnection(
            resolved,
            protocol=config.protocol,
            connect_timeout=config.connect_timeout_s,
            call_timeout=config.timeout_for,
            errlog=self._errlog,
        )
        caller: ToolCaller = ThrottledCaller(
            connection,
            slots=guards.slots,
            rate_limit=guards.rate_limit,
            budget_for=config.timeout_for,
            clock=self._clock,
        )
        caller = BreakerCaller(caller, guards.breaker, clock=self._clock)
        caller = InstrumentedCaller(caller, guards.health)
        caller = RetryingCaller(caller, config.retry, on_retry=record_retry, sleep=self._sleep)
        caller = CachedCaller(
            caller,
            self._cache,
            config,
            namespace=namespace,
            instance=f"{spec.name}-{resolved.key}",
        )
        log.debug("mcp server instance", server=spec.name, instance=resolved.key)
        return _Instance(connection=connection, caller=caller)


__all__ = ["McpManager", "ServerStatus", "TaskScope", "ToolResult"]


def git_dir_of(workspace: Path) -> Path | None:
    """The git directory `workspace/.git` is (a folder) or names (a `gitdir:` file), if any."""
    dot_git = workspace / ".git"
    if dot_git.is_dir():
        return dot_git.resolve()
    try:
        text = dot_git.read_text(errors="replace").strip()
    except OSError:
        return None
    if not text.startswith("gitdir:"):
        return None
    return (workspace / text.removeprefix("gitdir:").strip()).resolve()
