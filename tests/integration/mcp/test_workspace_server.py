"""The workspace MCP server: its tools, in process; then over stdio and Streamable HTTP."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_types import CallToolResult, TextContent

from devteam.mcp.workspace import WorkspaceLimits, create_workspace_server
from tests.integration.mcp.conftest import MakeManager, WorkspaceFolders, free_port, held_open

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
async def client(folders: WorkspaceFolders) -> AsyncIterator[Client]:
    async with held_open(Client(create_workspace_server(folders.root), cache=None)) as connected:
        yield connected


def text(result: CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, TextContent))


async def ok(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text(result)
    return text(result)


async def refused(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, f"{tool}({arguments}) answered {text(result)!r}"
    return text(result)


# -- every way out is refused -------------------------------------------------

ESCAPES = [
    pytest.param("../outside/secret.txt", "'..' is not allowed", id="dotdot"),
    pytest.param("src/../../outside/secret.txt", "'..' is not allowed", id="nested-dotdot"),
    pytest.param("src/..", "'..' is not allowed", id="dotdot-to-root"),
    pytest.param("/etc/passwd", "absolute paths are not allowed", id="absolute"),
    pytest.param("{secret}", "absolute paths are not allowed", id="absolute-to-secret"),
    pytest.param("link_out", "leads outside the workspace", id="symlink-file"),
    pytest.param("dir_out/secret.txt", "leads outside the workspace", id="symlink-folder"),
    pytest.param("bad\x00name", "NUL", id="nul"),
]


def _path(template: str, folders: WorkspaceFolders) -> str:
    return template.replace("{secret}", str(folders.secret))


@pytest.mark.parametrize(("template", "reason"), ESCAPES)
async def test_reading_out_of_the_root_is_refused(
    client: Client, folders: WorkspaceFolders, template: str, reason: str
) -> None:
    path = _path(template, folders)
    assert reason in await refused(client, "read_file", path=path)
    assert reason in await refused(client, "python_symbols", path=path)
    assert reason in await refused(client, "search_text", pattern="secret", path=path)


@pytest.mark.parametrize(("template", "reason"), ESCAPES)
async def test_writing_out_of_the_root_is_refused(
    client: Client, folders: WorkspaceFolders, template: str, reason: str
) -> None:
    path = _path(template, folders)
    assert reason in await refused(client, "write_file", path=path, content="pwned\n")
    created = f"--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+pwned\n"
    assert reason in await refused(client, "apply_patch", diff=created)
    assert folders.secret.read_text() == "top secret\n"
    assert sorted(p.name for p in folders.outside.iterdir()) == ["secret.txt"]


async def test_patching_a_file_through_a_symlink_out_is_refused(
    client: Client, folders: WorkspaceFolders
) -> None:
    diff = "--- a/link_out\n+++ b/link_out\n@@ -1 +1 @@\n-top secret\n+pwned\n"
    assert "leads outside the workspace" in await refused(client, "apply_patch", diff=diff)
    assert folders.secret.read_text() == "top secret\n"


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        pytest.param("..", "'..' is not allowed", id="dotdot"),
        pytest.param("/", "absolute paths are not allowed", id="absolute"),
        pytest.param("dir_out", "leads outside the workspace", id="symlink-folder"),
    ],
)
async def test_listing_out_of_the_root_is_refused(
    client: Client, folders: WorkspaceFolders, template: str, reason: str
) -> None:
    assert reason in await refused(client, "tree", path=_path(template, folders))


async def test_walks_do_not_follow_symlinks_out(client: Client) -> None:
    listing = await ok(client, "tree", max_depth=5)
    assert "dir_out (symlink)" in listing
    assert "secret.txt" not in listing
    assert await ok(client, "search_text", pattern="top secret") == "[no matches]"


# -- the tools ------------------------------------------------------------------


async def test_tree(client: Client) -> None:
    listing = (await ok(client, "tree")).splitlines()
    assert listing == [
        "README.md",
        "data.bin",
        "dir_out (symlink)",
        "link_in (symlink)",
        "link_out (symlink)",
        "src/",
        "src/app.py",
        "src/util.py",
    ]
    assert ".env" in await ok(client, "tree", include_hidden=True)
    assert await ok(client, "tree", path="src") == "src/app.py\nsrc/util.py"
    assert "src/app.py" not in await ok(client, "tree", max_depth=1)


async def test_read_file_whole_and_ranges(client: Client) -> None:
    assert await ok(client, "read_file", path="README.md") == "# Project\n\nSome words.\n"
    assert await ok(client, "read_file", path="src/app.py", start_line=6, end_line=7) == (
        "class Greeter:\n" + '    """Says hello."""\n'
    )
    assert await ok(client, "read_file", path="link_in", end_line=1) == '"""An app."""\n'
    assert "has 3 lines: nothing from line 9" in await ok(
        client, "read_file", path="README.md", start_line=9
    )


async def test_read_file_refusals(client: Client) -> None:
    assert "binary file" in await refused(client, "read_file", path="data.bin")
    assert "no such file or folder: nope.txt" in await refused(client, "read_file", path="nope.txt")
    assert "is a folder" in await refused(client, "read_file", path="src")
    assert "end_line must not be before start_line" in await refused(
        client, "read_file", path="README.md", start_line=3, end_line=2
    )


async def test_read_file_stops_at_the_size_cap(folders: WorkspaceFolders) -> None:
    (folders.root / "big.txt").write_text("".join(f"{n:04}\n" for n in range(1, 101)))
    server = create_workspace_server(folders.root, limits=WorkspaceLimits(max_read_bytes=50))
    async with Client(server, cache=None) as small:
        answer = await ok(small, "read_file", path="big.txt")
        assert answer.startswith("0001\n0002\n")
        assert answer.endswith("[truncated after line 10 (50 bytes): read on with start_line=11]")
        rest = await ok(small, "read_file", path="big.txt", start_line=11, end_line=12)
        assert rest == "0011\n0012\n"


async def test_write_file(client: Client, folders: WorkspaceFolders) -> None:
    assert await ok(client, "write_file", path="new/deep/file.txt", content="hi\n") == (
        "wrote 3 bytes to new/deep/file.txt"
    )
    assert (folders.root / "new/deep/file.txt").read_text() == "hi\n"
    await ok(client, "write_file", path="README.md", content="changed\n")
    assert (folders.root / "README.md").read_text() == "changed\n"
    await ok(client, "write_file", path="link_in", content="# through the link\n")
    assert (folders.root / "src/app.py").read_text() == "# through the link\n"
    assert "is a folder" in await refused(client, "write_file", path="src", content="x")


async def test_write_file_size_cap(folders: WorkspaceFolders) -> None:
    server = create_workspace_server(folders.root, limits=WorkspaceLimits(max_write_bytes=10))
    async with Client(server, cache=None) as small:
        assert "the limit is 10" in await refused(small, "write_file", path="x", content="x" * 11)
    assert not (folders.root / "x").exists()


async def test_apply_patch_edits_creates_renames_and_deletes(
    client: Client, folders: WorkspaceFolders
) -> None:
    diff = (
        "diff --git a/src/util.py b/src/util.py\n"
        "--- a/src/util.py\n+++ b/src/util.py\n"
        "@@ -1,2 +1,2 @@\n def helper():\n-    return 'TODO: more'\n+    return 'done'\n"
        "--- /dev/null\n+++ b/docs/notes.md\n@@ -0,0 +1,2 @@\n+# Notes\n+two\n"
        "--- a/README.md\n+++ b/README.txt\n"
        "@@ -1,3 +1,3 @@\n-# Project\n+# Renamed\n \n Some words.\n"
        "--- a/data.bin\n+++ /dev/null\n"
    )
    summary = await ok(client, "apply_patch", diff=diff)
    assert summary.splitlines() == [
        "patched src/util.py (+1 -1)",
        "created docs/notes.md (+2)",
        "renamed README.md to README.txt (+1 -1)",
        "deleted data.bin",
    ]
    assert (folders.root / "src/util.py").read_text() == "def helper():\n    return 'done'\n"
    assert (folders.root / "docs/notes.md").read_text() == "# Notes\ntwo\n"
    assert (folders.root / "README.txt").read_text().startswith("# Renamed\n")
    assert not (folders.root / "README.md").exists()
    assert not (folders.root / "data.bin").exists()


async def test_apply_patch_is_all_or_nothing(client: Client, folders: WorkspaceFolders) -> None:
    diff = (
        "--- a/src/util.py\n+++ b/src/util.py\n@@ -1 +1 @@\n-def helper():\n+def helped():\n"
        "--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-# Not what is there\n+# X\n"
    )
    assert "README.md: hunk 1 (at line 1) does not match" in await refused(
        client, "apply_patch", diff=diff
    )
    assert (folders.root / "src/util.py").read_text().startswith("def helper():")
    assert "the patch creates it, but it exists" in await refused(
        client, "apply_patch", diff="--- /dev/null\n+++ b/README.md\n@@ -0,0 +1 @@\n+x\n"
    )
    assert "no file sections found" in await refused(client, "apply_patch", diff="nonsense")


async def test_search_text(client: Client) -> None:
    assert await ok(client, "search_text", pattern=r"def \w+\(") == (
        "src/app.py:9: def greet(self, name: str) -> str:\n"
        "src/app.py:12: async def wait(self) -> None:\n"
        "src/app.py:16: def main(argv: list[str] | None = None) -> int:\n"
        "src/util.py:1: def helper():"
    )
    assert await ok(client, "search_text", pattern="todo", ignore_case=True) == (
        "src/util.py:2: return 'TODO: more'"
    )
    assert await ok(client, "search_text", pattern="def", glob="util.py") == (
        "src/util.py:1: def helper():"
    )
    assert await ok(client, "search_text", pattern="Project", glob=["*.py"]) == "[no matches]"
    assert "hidden" not in await ok(client, "search_text", pattern="hidden")
    capped = await ok(client, "search_text", pattern=".", max_results=2)
    assert capped.splitlines()[-1] == "[more matches not shown: the search stops at 2]"
    assert len(capped.splitlines()) == 3
    assert "invalid regular expression" in await refused(client, "search_text", pattern="(")


async def test_python_symbols(client: Client) -> None:
    result = await client.call_tool("python_symbols", {"path": "src/app.py"})
    assert not result.is_error
    assert isinstance(result.structured_content, dict)
    symbols = result.structured_content["result"]
    assert [(s["name"], s["kind"], s["line"]) for s in symbols] == [
        ("Greeter", "class", 6),
        ("Greeter.greet", "method", 9),
        ("Greeter.wait", "async_method", 12),
        ("main", "function", 16),
    ]
    assert symbols[0]["docstring"] == "Says hello."
    assert symbols[3]["signature"] == "def main(argv: list[str] | None=None) -> int"


async def test_python_symbols_of_broken_source(client: Client, folders: WorkspaceFolders) -> None:
    (folders.root / "broken.py").write_text("def f(:\n")
    assert "broken.py:1: not valid Python" in await refused(
        client, "python_symbols", path="broken.py"
    )


# -- real transports, through the client layer ---------------------------------------


async def test_over_stdio_with_the_shipped_configuration(
    make_manager: MakeManager, folders: WorkspaceFolders
) -> None:
    from devteam.settings import load_config

    shipped = load_config(REPO / "config").mcp_servers.servers["workspace"]
    manager = make_manager({"workspace": shipped.model_dump()})
    async with manager.task_scope(folders.root) as scope:
        listing = await scope.call("workspace", "tree", {"path": "src"})
        assert listing.text == "src/app.py\nsrc/util.py"
        written = await scope.call("workspace", "write_file", {"path": "out.txt", "content": "x"})
        assert written.text == "wrote 1 bytes to out.txt"
        escape = await scope.call("workspace", "read_file", {"path": "../outside/secret.txt"})
        assert escape.is_error
        assert "'..' is not allowed" in escape.text

        readme = {"path": "README.md"}
        assert not (await scope.call("workspace", "read_file", readme)).cached
        assert (await scope.call("workspace", "read_file", readme)).cached
        (folders.root / "README.md").write_text("changed behind the server's back\n")
        await scope.forget_cached_results()
        fresh = await scope.call("workspace", "read_file", readme)
        assert (fresh.cached, fresh.text) == (False, "changed behind the server's back\n")
        connection = scope.connection("workspace")
        assert connection is not None and connection.sessions_opened == 1
    assert (folders.root / "out.txt").read_text() == "x"


async def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    """Until the server accepts connections (or its process ended)."""
    for _ in range(600):
        assert process.poll() is None, "the server process ended"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


@pytest.mark.slow
async def test_over_streamable_http(make_manager: MakeManager, folders: WorkspaceFolders) -> None:
    port = free_port()
    command = [sys.executable, "-m", "devteam", "mcp", "workspace", "--root", str(folders.root)]
    process = subprocess.Popen([*command, "--http", "--port", str(port)])
    try:
        await wait_for_port(port, process)
        manager = make_manager(
            {
                "workspace": {
                    "transport": {
                        "type": "streamable_http",
                        "url": f"http://127.0.0.1:{port}/mcp",
                    },
                    "connect_timeout_s": 20,
                }
            }
        )
        symbols = await manager.call("workspace", "python_symbols", {"path": "src/app.py"})
        assert [s["name"] for s in symbols.structured] == [
            "Greeter",
            "Greeter.greet",
            "Greeter.wait",
            "main",
        ]
        escape = await manager.call("workspace", "read_file", {"path": "link_out"})
        assert escape.is_error and "leads outside the workspace" in escape.text
        patched = await manager.call(
            "workspace",
            "apply_patch",
            {"diff": "--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+over http\n"},
        )
        assert patched.text == "created new.txt (+1)"
        assert (folders.root / "new.txt").read_text() == "over http\n"
        assert {tool.name for tool in await manager.list_tools("workspace")} == {
            "tree",
            "read_file",
            "write_file",
            "apply_patch",
            "search_text",
            "python_symbols",
        }
        await manager.close()
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_cli_refuses_a_missing_root(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "devteam", "mcp", "workspace", "--root", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert finished.returncode == 2
    assert finished.stderr.strip().endswith(f"--root {tmp_path / 'nope'}: not a folder")
    assert finished.stdout == ""
