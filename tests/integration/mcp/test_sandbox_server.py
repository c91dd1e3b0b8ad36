"""The sandbox MCP server: `run_command` in process, then over stdio as DevTeam starts it."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_types import CallToolResult, TextContent

from devteam.mcp.sandbox import create_sandbox_server
from devteam.sandbox import NO_ISOLATION_WARNING
from devteam.settings import SandboxConfig
from tests.integration.mcp.conftest import MakeManager, held_open
from tests.integration.sandbox.conftest import processes_with, require_bwrap

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _bwrap() -> None:
    require_bwrap()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    worktree = tmp_path / "worktree"
    (worktree / "pkg").mkdir(parents=True)
    (worktree / "pkg" / "data.txt").write_text("payload\n")
    return worktree


@pytest.fixture
async def client(root: Path) -> AsyncIterator[Client]:
    server = create_sandbox_server(root, SandboxConfig(timeout_s=20, output_bytes=4096))
    async with held_open(Client(server, cache=None)) as connected:
        yield connected


def text(result: CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, TextContent))


async def call(client: Client, **arguments: Any) -> CallToolResult:
    return await client.call_tool("run_command", arguments)


def shipped_sandbox(**changes: Any) -> dict[str, Any]:
    from devteam.settings import load_config

    server = load_config(REPO / "config").mcp_servers.servers["sandbox"].model_dump()
    server.update(changes)
    return server


def grandchild(marker: str) -> str:
    head, tail = marker[:8], marker[8:]
    return f'sh -c \'sleep 1000; :\' "{head}""{tail}" &'


async def wait_for(predicate: Any, what: str, tries: int = 400) -> Any:
    for _ in range(tries):
        if value := predicate():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(what)


# -- in process ------------------------------------------------------------------------


async def test_lists_one_tool_with_its_schema(client: Client) -> None:
    tools = (await client.list_tools()).tools
    assert [tool.name for tool in tools] == ["run_command"]
    schema = tools[0].input_schema
    assert schema["required"] == ["command"]
    assert set(schema["properties"]) == {"command", "cwd", "timeout_s", "max_output_bytes"}


async def test_runs_a_shell_string_or_an_argv(client: Client) -> None:
    shell = await call(client, command="cat data.txt && echo $TERM", cwd="pkg")
    assert not shell.is_error
    assert text(shell).splitlines() == [
        "$ cat data.txt && echo $TERM",
        text(shell).splitlines()[1],
        "payload",
        "dumb",
    ]
    assert text(shell).splitlines()[1].startswith("exit code 0 · ")
    argv = await call(client, command=["printf", "%s|", "a b", "$HOME"])
    assert text(argv).splitlines()[0] == "$ printf '%s|' 'a b' '$HOME'"
    assert text(argv).splitlines()[-1] == "a b|$HOME|"


async def test_a_failing_command_is_a_result_not_a_tool_error(client: Client) -> None:
    result = await call(client, command="echo broken >&2; exit 4")
    assert not result.is_error
    assert "exit code 4" in text(result) and "broken" in text(result)


async def test_refused_requests_are_tool_errors(client: Client) -> None:
    outside = await call(client, command="ls", cwd="../")
    assert outside.is_error and "validation_error" in text(outside)
    empty = await call(client, command=" ")
    assert empty.is_error and "empty" in text(empty)


async def test_timeout_and_output_never_exceed_the_configured_limits(client: Client) -> None:
    timed = await call(client, command="sleep 30", timeout_s=1)
    assert "exit code 124 (timed out)" in text(timed)
    capped = await call(client, command="yes | head -n 100000", max_output_bytes=1024)
    assert "[output truncated" in text(capped)
    assert len(text(capped)) < 1500
    # Asking for more than the configured 4096 bytes gets 4096.
    larger = await call(client, command="yes | head -n 100000", max_output_bytes=10**9)
    assert 4000 < len(text(larger)) < 4600


async def test_missing_bwrap_is_a_sandbox_unavailable_tool_error(root: Path) -> None:
    config = SandboxConfig(bwrap_path="/nonexistent/bwrap")
    async with Client(create_sandbox_server(root, config), cache=None) as client:
        result = await call(client, command="true")
    assert result.is_error
    assert "sandbox_unavailable: bubblewrap was not found" in text(result)


async def test_without_isolation_it_warns_at_start_and_in_every_result(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = SandboxConfig(isolation="none", bwrap_path="/nonexistent/bwrap")
    with caplog.at_level(logging.WARNING):
        server = create_sandbox_server(root, config)
    assert NO_ISOLATION_WARNING in caplog.text
    async with Client(server, cache=None) as client:
        for command in ("true", "exit 1"):
            result = await call(client, command=command)
            assert f"[warning: {NO_ISOLATION_WARNING}]" in text(result)


# -- over stdio, as DevTeam starts it ------------------------------------------------------


async def test_over_stdio_with_the_shipped_configuration(
    make_manager: MakeManager, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVTEAM_JWT_SECRET", "jwt-secret-value-0123456789abcdef")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-provider-key")
    manager = make_manager({"sandbox": shipped_sandbox()})
    async with manager.task_scope(root) as scope:
        listed = await scope.call(
            "sandbox", "run_command", {"command": "env; echo hi > made.txt; ls /"}
        )
        assert not listed.is_error, listed.text
        assert "exit code 0" in listed.text
        assert "jwt-secret-value" not in listed.text and "sk-provider-key" not in listed.text
        assert "warning" not in listed.text
        network = await scope.call(
            "sandbox",
            "run_command",
            {
                "command": [
                    "python3",
                    "-c",
                    "import urllib.request as u; u.urlopen('http://1.1.1.1', timeout=3)",
                ]
            },
        )
        assert "exit code 1" in network.text and "Network is unreachable" in network.text
    assert (root / "made.txt").read_text() == "hi\n"


def server_pids(root: Path) -> list[int]:
    return [
        pid
        for pid in processes_with(f"--root\x00{root}")
        if b"sandbox" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


async def test_killing_the_server_kills_the_running_command(
    make_manager: MakeManager, root: Path
) -> None:
    manager = make_manager({"sandbox": shipped_sandbox()})
    marker = f"sandboxed-{uuid.uuid4().hex}"
    async with manager.task_scope(root) as scope:
        running = asyncio.create_task(
            scope.call("sandbox", "run_command", {"command": f"{grandchild(marker)} sleep 1000"})
        )
        command_pids = await wait_for(lambda: processes_with(marker), "the command never ran")
        (server,) = server_pids(root)
        os.kill(server, signal.SIGKILL)
        await wait_for(lambda: not any(map(_alive, command_pids)), "the command outlived it")
        running.cancel()
        with pytest.raises((asyncio.CancelledError, Exception)):
            await running


async def test_closing_the_session_kills_the_running_command(
    make_manager: MakeManager, root: Path
) -> None:
    manager = make_manager({"sandbox": shipped_sandbox()})
    marker = f"sandboxed-{uuid.uuid4().hex}"
    async with manager.task_scope(root) as scope:
        running = asyncio.create_task(
            scope.call("sandbox", "run_command", {"command": f"{grandchild(marker)} sleep 1000"})
        )
        command_pids = await wait_for(lambda: processes_with(marker), "the command never ran")
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    # The scope is closed: its server is stopped, and the command with it.
    await wait_for(lambda: not any(map(_alive, command_pids)), "the command outlived it", 200)
    assert server_pids(root) == []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_stdio_sandbox_unavailable_and_isolation_none_from_the_config_file(
    make_manager: MakeManager, root: Path, tmp_path: Path
) -> None:
    configs = {}
    for name, isolation in (("missing", "bubblewrap"), ("plain", "none")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "verification.yaml").write_text(
            f"sandbox: {{isolation: {isolation}, bwrap_path: /nonexistent/bwrap}}\n"
        )
        configs[name] = folder
    servers = {
        name: shipped_sandbox(
            transport={
                "type": "stdio",
                "command": "{python}",
                "args": ["-m", "devteam", "mcp", "sandbox", "--root", "{workspace}",
                         "--config-dir", str(folder)],
            }
        )
        for name, folder in configs.items()
    }  # fmt: skip
    manager = make_manager(servers)
    async with manager.task_scope(root) as scope:
        refused = await scope.call("missing", "run_command", {"command": "true"})
        assert refused.is_error and "sandbox_unavailable: " in refused.text
        plain = await scope.call("plain", "run_command", {"command": "echo ran"})
        assert not plain.is_error
        assert f"[warning: {NO_ISOLATION_WARNING}]" in plain.text and "ran" in plain.text


def test_the_command_line_warns_at_start_without_isolation(root: Path, tmp_path: Path) -> None:
    (tmp_path / "verification.yaml").write_text("sandbox: {isolation: none}\n")
    command = [sys.executable, "-m", "devteam", "mcp", "sandbox", "--root", str(root)]
    finished = subprocess.run(
        [*command, "--config-dir", str(tmp_path)],
        input=b"",
        capture_output=True,
        timeout=30,
        cwd=REPO,
        check=False,
    )
    assert "without isolation" in finished.stderr.decode()
    bad = subprocess.run(
        [*command[:-1], str(tmp_path / "missing")], capture_output=True, timeout=30, check=False
    )
    assert bad.returncode == 2 and b"not a folder" in bad.stderr


async def test_a_command_retires_what_the_workspace_server_cached(
    make_manager: MakeManager, root: Path
) -> None:
    from devteam.settings import load_config

    workspace = load_config(REPO / "config").mcp_servers.servers["workspace"].model_dump()
    manager = make_manager({"workspace": workspace, "sandbox": shipped_sandbox()})
    data = {"path": "pkg/data.txt"}
    async with manager.task_scope(root) as scope:
        assert (await scope.call("workspace", "read_file", data)).text == "payload\n"
        assert (await scope.call("workspace", "read_file", data)).cached
        await scope.call("sandbox", "run_command", {"command": "echo changed > pkg/data.txt"})
        fresh = await scope.call("workspace", "read_file", data)
        assert (fresh.cached, fresh.text) == (False, "changed\n")
