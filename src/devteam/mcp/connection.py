"""One long-lived MCP session to one server instance, reopened when it breaks.

The SDK's `Client` is entered and exited by a runner task of its own (its anyio
task groups must be left by the task that entered them), so the session
outlives whichever agent task opened it, and any task may call through it.

- The session opens on the first call, bounded by the connect timeout.
- When the transport breaks (the stdio process died, the HTTP server went
  away), the call that notices fails with `TransportFailure` and the session is
  dropped; the next call starts a new one, which is what makes a retry of a
  crashed stdio server succeed.
- The tool list read last is kept (`fresh_tools`) until the server says it changed:
  `notifications/tools/list_changed` on the 2025 protocol versions, a
  `subscriptions/listen` stream on the 2026 ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal, TextIO

import anyio
import httpx2
from mcp import Client, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import SubscriptionLost
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CONNECTION_CLOSED,
    REQUEST_TIMEOUT,
    CallToolResult,
    Implementation,
    ServerNotification,
    Tool,
    ToolListChangedNotification,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from devteam import __version__
from devteam.mcp.caller import current_trace
from devteam.mcp.errors import CallTimeout, ProtocolError, ServerUnavailable, TransportFailure
from devteam.mcp.registry import ResolvedTransport, ServerInstance
from devteam.observability.logging import get_logger
from devteam.settings.mcp_servers import StdioTransport

log = get_logger(__name__)

CLIENT_INFO = Implementation(name="devteam", version=__version__)
STOP_GRACE_S = 10.0
"""How long a closing session may take (stdio: stdin closed, then TERM, then KILL)."""
MAX_TOOL_PAGES = 100

# What a broken transport raises besides the SDK's CONNECTION_CLOSED error.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    httpx2.TransportError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)

ToolsListener = Callable[[], None]


def describe(exc: BaseException) -> str:
    """One line for an exception, looking inside exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@asynccontextmanager
async def _http_transport(url: str, headers: Mapping[str, str]) -> AsyncIterator[Any]:
    async with (
        create_mcp_http_client(headers=dict(headers) or None) as http_client,
        streamable_http_client(url, http_client=http_client) as streams,
    ):
        yield streams


def open_transport(transport: ResolvedTransport, *, errlog: TextIO | None = None) -> Any:
    """The SDK transport (an async context manager of the stream pair) for `transport`."""
    if isinstance(transport, StdioTransport):
        params = StdioServerParameters(
            command=transport.command,
            args=list(transport.args),
            env=dict(transport.env) or None,
            cwd=transport.cwd,
        )
        return stdio_client(params, errlog=errlog or sys.stderr)
    return _http_transport(transport.url, transport.headers)


class McpConnection:
    """The session to one server instance; safe to call from many tasks at once."""

    def __init__(
        self,
        instance: ServerInstance,
        *,
        protocol: Literal["auto", "legacy"] = "auto",
        connect_timeout: float = 30.0,
        call_timeout: Callable[[str], float] | float = 60.0,
        errlog: TextIO | None = None,
    ) -> None:
        self.instance = instance
        self.server = instance.server
        self._protocol = protocol
        self._connect_timeout = connect_timeout
        self._call_timeout = call_timeout
        self._errlog = errlog
        self._client: Client | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._open_lock = asyncio.Lock()
        self._closed = False
        self._tools: list[Tool] | None = None
        self._tools_epoch = 0
        """Bumped by every list-changed signal; the cache is fresh at the epoch it was read."""
        self._tools_read_epoch = -1
        self._refresh_wanted = asyncio.Event()
        self._listeners: list[ToolsListener] = []
        self.sessions_opened = 0
        """Sessions started so far (a reconnect after a crash starts another)."""
        self.protocol_version: str | None = None
        self.last_error: str | None = None

    @property
    def connected(self) -> bool:
        return self._client is not None

    @property
    def fresh_tools(self) -> list[Tool] | None:
        """The last tool list read, if the server has not said it changed since."""
        if self._tools is None or self._tools_read_epoch != self._tools_epoch:
            return None
        return list(self._tools)

    @property
    def known_tools(self) -> list[Tool] | None:
        """The last tool list read, fresh or not."""
        return None if self._tools is None else list(self._tools)

    def add_tools_listener(self, listener: ToolsListener) -> None:
        """Call `listener` whenever the server says its tool list changed."""
        self._listeners.append(listener)

    def timeout_for(self, tool: str) -> float:
        timeout = self._call_timeout
        return timeout(tool) if callable(timeout) else timeout

    async def call_tool(self, tool: str, arguments: Mapping[str, Any]) -> CallToolResult:
        """One `tools/call`; a result with `is_error` is returned like any other."""
        client = await self._session()
        timeout = self.timeout_for(tool)
        try:
            async with asyncio.timeout(timeout):
                return await client.call_tool(tool, dict(arguments))
        except TimeoutError:
            raise CallTimeout(self.server, f"{tool} gave no answer within {timeout:g}s") from None
        except MCPError as exc:
            raise self._classify(client, exc, tool) from None
        except TRANSPORT_ERRORS as exc:
            self._drop(client, describe(exc))
            raise TransportFailure(self.server, f"{tool}: {describe(exc)}") from None
        except (RuntimeError, ValidationError) as exc:
            # The SDK's own checks of the answer (schema, shape): the server did answer.
            raise ProtocolError(self.server, f"{tool}: {describe(exc)}") from None

    async def list_tools(self) -> list[Tool]:
        """Read the tool list from the server (and keep it: see `fresh_tools`)."""
        client = await self._session()
        return await self._read_tools(client)

    async def close(self) -> None:
        self._closed = True
        await self._stop_runner()

    # -- session lifecycle -------------------------------------------------

    async def _session(self) -> Client:
        if (client := self._client) is not None:
            return client
        started = time.monotonic()
        try:
            return await self._open_session()
        finally:
            if (trace := current_trace()) is not None:
                trace.waited_s += time.monotonic() - started

    async def _open_session(self) -> Client:
        async with self._open_lock:
            if (client := self._client) is not None:
                return client
            if self._closed:
                raise ServerUnavailable(self.server, "the connection was closed")
            await self._stop_runner()
            ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
            self._stop = asyncio.Event()
            self._runner = asyncio.create_task(
                self._run(ready, self._stop), name=f"mcp-session-{self.server}"
            )
            try:
                async with asyncio.timeout(self._connect_timeout):
                    client = await asyncio.shield(ready)
            except TimeoutError:
                await self._stop_runner()
                reason = f"no handshake within {self._connect_timeout:g}s"
                self.last_error = reason
                raise TransportFailure(self.server, reason) from None
            except Exception as exc:
                await self._stop_runner()
                reason = f"cannot connect: {describe(exc)}"
                self.last_error = reason
                raise TransportFailure(self.server, reason) from None
            self.sessions_opened += 1
            return client

    async def _run(self, ready: asyncio.Future[Client], stop: asyncio.Event) -> None:
        """Own the SDK client: enter it, serve until asked to stop or it breaks, leave it."""
        transport = open_transport(self.instance.transport, errlog=self._errlog)
        mode = "legacy" if self._protocol == "legacy" else "auto"
        try:
            async with (
                Client(
                    transport,
                    mode=mode,
                    message_handler=self._on_message,
                    client_info=CLIENT_INFO,
                    cache=None,
                ) as client,
                anyio.create_task_group() as tasks,
            ):
                self.protocol_version = client.protocol_version
                capabilities = client.server_capabilities
                if (
                    client.protocol_version in MODERN_PROTOCOL_VERSIONS
                    and capabilities.tools is not None
                    and capabilities.tools.list_changed
                ):
                    tasks.start_soon(self._listen, client)
                tasks.start_soon(self._refresh_tools_on_change, client)
                self._client = client
                self._tools_epoch += 1  # a new session may list other tools
                ready.set_result(client)
                log.info(
                    "mcp session opened",
                    server=self.server,
                    instance=self.instance.key,
                    protocol=client.protocol_version,
                )
                await stop.wait()
                tasks.cancel_scope.cancel()
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                self.last_error = f"connection lost: {describe(exc)}"
                log.warning(
                    "mcp session lost",
                    server=self.server,
                    instance=self.instance.key,
                    error=describe(exc),
                )
        finally:
            if not ready.done():
                ready.cancel()
            self._client = None

    async def _stop_runner(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(runner), STOP_GRACE_S)
        except TimeoutError:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    def _drop(self, client: Client, reason: str) -> None:
        """Forget a session whose transport broke; the next call opens a new one."""
        if self._client is client:
            self._client = None
            self.last_error = f"connection lost: {reason}"
            self._stop.set()
            log.warning(
                "mcp session broken", server=self.server, instance=self.instance.key, error=reason
            )

    def _classify(self, client: Client, exc: MCPError, tool: str) -> Exception:
        if exc.code == CONNECTION_CLOSED:
            self._drop(client, exc.message)
            return TransportFailure(self.server, f"{tool}: connection closed")
        if exc.code == REQUEST_TIMEOUT:
            return CallTimeout(self.server, f"{tool}: {exc.message}")
        return ProtocolError(self.server, f"{tool}: {exc.message} (JSON-RPC {exc.code})")

    # -- tool list -----------------------------------------------------------

    async def _read_tools(self, client: Client) -> list[Tool]:
        epoch = self._tools_epoch
        tools: list[Tool] = []
        cursor: str | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                for _ in range(MAX_TOOL_PAGES):
                    page = await client.list_tools(cursor=cursor)
                    tools.extend(page.tools)
                    cursor = page.next_cursor
                    if cursor is None:
                        break
        except TimeoutError:
            raise CallTimeout(self.server, "tools/list gave no answer in time") from None
        except MCPError as exc:
            raise self._classify(client, exc, "tools/list") from None
        except TRANSPORT_ERRORS as exc:
            self._drop(client, describe(exc))
            raise TransportFailure(self.server, f"tools/list: {describe(exc)}") from None
        self._tools = tools
        self._tools_read_epoch = epoch
        return list(tools)

    def _tools_changed(self) -> None:
        self._tools_epoch += 1
        self._refresh_wanted.set()
        for listener in self._listeners:
            listener()

    async def _on_message(self, message: ServerNotification | Exception) -> None:
        if isinstance(message, ToolListChangedNotification):
            self._tools_changed()
        elif isinstance(message, Exception):
            log.warning("mcp transport error", server=self.server, error=describe(message))

    async def _refresh_tools_on_change(self, client: Client) -> None:
        """Refetch the tool list after each change signal, so the cache is warm again."""
        while True:
            await self._refresh_wanted.wait()
            self._refresh_wanted.clear()
            try:
                await self._read_tools(client)
            except Exception as exc:
                log.warning("mcp tool list refresh failed", server=self.server, error=describe(exc))

    async def _listen(self, client: Client) -> None:
        """Follow `subscriptions/listen` (2026 protocol): each event marks the tools changed.

        A stream that ends abruptly may have missed events: the tools are marked
        changed and the stream reopened once; when that fails too, the connection
        is taken as broken.
        """
        reopened = False
        while True:
            try:
                async with client.listen(tools_list_changed=True) as subscription:
                    reopened = False
                    async for _event in subscription:
                        self._tools_changed()
                return
            except SubscriptionLost as exc:
                self._tools_changed()
                if reopened:
                    self._drop(client, f"change subscription lost: {describe(exc)}")
                    return
                reopened = True
            except Exception as exc:
                self._drop(client, f"change subscription failed: {describe(exc)}")
                return
