"""Fixtures for the MCP layer: a workspace folder, managers on real servers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from devteam.broker.memory import MemoryBroker
from devteam.broker.protocol import Broker
from devteam.mcp.manager import McpManager
from devteam.settings.mcp_servers import McpServersConfig

T = TypeVar("T")

APP_PY = '''"""An app."""

import os


class Greeter:
    """Says hello."""

    def greet(self, name: str) -> str:
        return f"hello {name}"

    async def wait(self) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    return 0
'''


@dataclass(frozen=True)
class WorkspaceFolders:
    root: Path
    outside: Path
    secret: Path


@pytest.fixture
def folders(tmp_path: Path) -> WorkspaceFolders:
    """A workspace with files, a binary, symlinks inside and out; and a folder outside it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "src").mkdir(parents=True)
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("top secret\n")
    (root / "README.md").write_text("# Project\n\nSome words.\n")
    (root / "src" / "app.py").write_text(APP_PY)
    (root / "src" / "util.py").write_text("def helper():\n    return 'TODO: more'\n")
    (root / ".env").write_text("TOKEN=hidden\n")
    (root / "data.bin").write_bytes(b"\x00\x01\x02binary")
    (root / "link_in").symlink_to(root / "src" / "app.py")
    (root / "link_out").symlink_to(secret)
    (root / "dir_out").symlink_to(outside, target_is_directory=True)
    return WorkspaceFolders(root, outside, secret)


@asynccontextmanager
async def held_open(context: AbstractAsyncContextManager[T]) -> AsyncIterator[T]:
    """Enter and leave `context` in a task of its own.

    An async fixture's setup and teardown run in different tasks, and the SDK's
    anyio scopes must be left by the task that entered them.
    """
    entered: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    release = asyncio.Event()

    async def hold() -> None:
        try:
            async with context as value:
                entered.set_result(value)
                await release.wait()
        except BaseException as exc:
            if not entered.done():
                entered.set_exception(exc)
            raise

    task = asyncio.create_task(hold())
    try:
        yield await entered
    finally:
        release.set()
        await task


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


MakeManager = Callable[..., McpManager]


@pytest.fixture
async def make_manager() -> AsyncIterator[MakeManager]:
    """`make_manager(servers, broker=None, **options)`: a manager closed after the test."""
    managers: list[McpManager] = []
    brokers: list[Broker] = []

    def make(
        servers: dict[str, Any], *, broker: Broker | None = None, **options: Any
    ) -> McpManager:
        if broker is None:
            broker = MemoryBroker()
            brokers.append(broker)
        config = McpServersConfig.model_validate({"servers": servers})
        manager = McpManager(config, broker, **options)
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        await manager.close()
    for broker in brokers:
        await broker.close()
