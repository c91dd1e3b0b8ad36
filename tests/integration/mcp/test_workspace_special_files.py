"""The workspace server reads regular files only: a FIFO, device or socket never blocks it.

A FIFO with no writer blocks an ordinary `open` forever; a model (or a project's
checkout) can create one, so the read tools must refuse it at once and the walks
must skip it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from mcp import Client

from devteam.mcp.workspace import create_workspace_server
from tests.integration.mcp.conftest import WorkspaceFolders, held_open
from tests.integration.mcp.test_workspace_server import ok, refused

NOT_REGULAR = "is not a regular file (a FIFO, device or socket)"
DEADLINE_S = 10.0
"""Far more than any answer takes; a read blocked on a FIFO would never come back."""


@pytest.fixture
def special_files(folders: WorkspaceFolders) -> Iterator[Path]:
    """A FIFO and a listening Unix socket in the workspace, next to its regular files."""
    fifo = folders.root / "src" / "pipe.py"
    os.mkfifo(fifo)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(folders.root / "src" / "server.sock"))
    listener.listen()
    try:
        yield folders.root
    finally:
        listener.close()
        # Release a reader a failing server left blocked on the FIFO (no reader: ENXIO).
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


@pytest.fixture
async def client(folders: WorkspaceFolders, special_files: Path) -> AsyncIterator[Client]:
    async with held_open(Client(create_workspace_server(folders.root), cache=None)) as connected:
        yield connected


@pytest.mark.parametrize("name", ["pipe.py", "server.sock"], ids=["fifo", "socket"])
async def test_reading_a_special_file_is_refused_at_once(client: Client, name: str) -> None:
    path = f"src/{name}"
    async with asyncio.timeout(DEADLINE_S):
        assert NOT_REGULAR in await refused(client, "read_file", path=path)
        assert NOT_REGULAR in await refused(client, "python_symbols", path=path)
        assert NOT_REGULAR in await refused(client, "search_text", pattern="x", path=path)


async def test_walks_skip_special_files(client: Client) -> None:
    async with asyncio.timeout(DEADLINE_S):
        tree = (await ok(client, "tree", path="src")).splitlines()
        found = await ok(client, "search_text", pattern="def ")
    assert "src/app.py" in tree
    assert not {"src/pipe.py", "src/server.sock"} & set(tree)
    assert "src/app.py:" in found
    assert "pipe.py" not in found
