"""Results of idempotent tools, kept in the broker cache (Redis in production).

A result is keyed by server, instance, tool and the canonical form of the
arguments (JSON with sorted keys, hashed), and kept for the tool's
`cache_ttl_s`. Only tools marked `idempotent` with a TTL are cached, and only
answers that are not errors.

Entries live in a namespace with a generation: any call to a tool that is not
idempotent (a write) starts a new generation, so nothing cached before it is
served after it. Servers started for a task share the task's namespace, so a
write through one (a file written, a branch checked out) also retires what the
others cached for that task.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

from mcp_types import CallToolResult
from pydantic import ValidationError

from devteam.broker.protocol import Cache
from devteam.mcp.caller import ToolCaller, WrapperCaller, current_trace
from devteam.observability.logging import get_logger
from devteam.observability.metrics import MCP_CACHE
from devteam.settings.mcp_servers import McpServerConfig

log = get_logger(__name__)

GENERATION_TTL_S = 7 * 24 * 3600.0


def canonical_arguments(arguments: Mapping[str, Any]) -> str:
    """The arguments as JSON with sorted keys: equal arguments give equal text."""
    return json.dumps(
        arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )


def arguments_digest(arguments: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_arguments(arguments).encode()).hexdigest()


class ToolResultCache:
    def __init__(self, cache: Cache) -> None:
        self._cache = cache

    async def get(
        self, namespace: str, instance: str, tool: str, arguments: Mapping[str, Any]
    ) -> CallToolResult | None:
        key = await self._key(namespace, instance, tool, arguments)
        data = await self._cache.get(key)
        if data is None:
            return None
        try:
            return CallToolResult.model_validate_json(data)
        except ValidationError:
            # Written by another version of the service: treat as a miss.
            await self._cache.delete(key)
            return None

    async def put(
        self,
        namespace: str,
        instance: str,
        tool: str,
        arguments: Mapping[str, Any],
        result: CallToolResult,
        ttl: float,
    ) -> None:
        key = await self._key(namespace, instance, tool, arguments)
        data = result.model_dump_json(by_alias=True, exclude_none=True).encode()
        await self._cache.set(key, data, ttl)

    async def invalidate(self, namespace: str) -> None:
        """Retire everything cached in `namespace` (a new generation starts)."""
        await self._cache.set(self._generation_key(namespace), _new_generation(), GENERATION_TTL_S)

    async def _key(
        self, namespace: str, instance: str, tool: str, arguments: Mapping[str, Any]
    ) -> str:
        generation = await self._generation(namespace)
        return (
            f"mcp:result:{namespace}:{generation}:{instance}:{tool}:{arguments_digest(arguments)}"
        )

    async def _generation(self, namespace: str) -> str:
        key = self._generation_key(namespace)
        if (current := await self._cache.get(key)) is not None:
            return current.decode()
        generation = _new_generation()
        await self._cache.set(key, generation, GENERATION_TTL_S)
        return generation.decode()

    @staticmethod
    def _generation_key(namespace: str) -> str:
        return f"mcp:generation:{namespace}"


def _new_generation() -> bytes:
    return uuid.uuid4().hex[:12].encode()


class CachedCaller(WrapperCaller):
    """Serves repeated calls of cacheable tools from the cache; writes retire the namespace."""

    def __init__(
        self,
        inner: ToolCaller,
        cache: ToolResultCache,
        config: McpServerConfig,
        *,
        namespace: str,
        instance: str,
    ) -> None:
        super().__init__(inner)
        self._cache = cache
        self._config = config
        self._namespace = namespace
        self._instance = instance

    async def call_tool(self, tool: str, arguments: Mapping[str, Any]) -> CallToolResult:
        policy = self._config.tool(tool)
        if not policy.idempotent:
            try:
                return await self.inner.call_tool(tool, arguments)
            finally:
                await self._cache.invalidate(self._namespace)
        if policy.cache_ttl_s is None:
            return await self.inner.call_tool(tool, arguments)

        hit = await self._cache.get(self._namespace, self._instance, tool, arguments)
        if hit is not None:
            MCP_CACHE.labels(server=self.server, result="hit").inc()
            if (trace := current_trace()) is not None:
                trace.cached = True
            return hit
        MCP_CACHE.labels(server=self.server, result="miss").inc()
        result = await self.inner.call_tool(tool, arguments)
        if not result.is_error:
            await self._cache.put(
                self._namespace, self._instance, tool, arguments, result, policy.cache_ttl_s
            )
        return result
