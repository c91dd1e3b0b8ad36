"""`devteam login|submit|watch|tasks ...` as a user runs them, against a live server.

The server is uvicorn on loopback in the test's event loop, with scripted agents;
each command is a real `python -m devteam` process with its own HOME.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import stat
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devteam.domain.enums import AgentType, Role
from tests.auth import PASSWORD, add_user, security_config
from tests.fakes.agents import ScriptBook, Step
from tests.live import LiveServer
from tests.processes import clean_env
from tests.proxy import Proxy

pytestmark = pytest.mark.slow

SEQ_LINE = re.compile(r"^#(\d+)\s")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def seqs(self) -> list[int]:
        return [int(m.group(1)) for line in self.stdout.splitlines() if (m := SEQ_LINE.match(line))]


class Cli:
    """Runs `devteam` commands as one user with a HOME of their own."""

    def __init__(self, home: Path, url: str) -> None:
        self.home = home
        self.url = url

    def env(self) -> dict[str, str]:
        env = clean_env(HOME=str(self.home), DEVTEAM_URL=self.url, COLUMNS="200")
        if not self.url:
            env.pop("DEVTEAM_URL")
        env.pop("XDG_CONFIG_HOME", None)
        return env

    async def start(self, *args: str, stdin: bool = False) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "devteam",
            *args,
            env=self.env(),
            cwd=self.home,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def run(self, *args: str, stdin: str | None = None, timeout: float = 60) -> Result:
        process = await self.start(*args, stdin=stdin is not None)
        out, err = await asyncio.wait_for(
            process.communicate(stdin.encode() if stdin is not None else None), timeout
        )
        assert process.returncode is not None
        return Result(process.returncode, out.decode(), err.decode())

    async def login(self, username: str) -> Result:
        return await self.run("login", "--username", username, "--password-stdin", stdin=PASSWORD)

    @property
    def credentials(self) -> Path:
        return self.home / ".config" / "devteam" / "credentials.json"


@dataclass
class Team:
    ok: ScriptBook
    failing: ScriptBook
    blocking: ScriptBook
    gated: ScriptBook
    gate: asyncio.Event

    def agents(self) -> dict[AgentType, Any]:
        """backend succeeds, research fails, frontend blocks, codebase_analyzer waits at a gate."""
        return {
            AgentType.BACKEND: self.ok.agents()[AgentType.BACKEND],
            AgentType.RESEARCH: self.failing.agents()[AgentType.RESEARCH],
            AgentType.FRONTEND: self.blocking.agents()[AgentType.FRONTEND],
            AgentType.CODEBASE_ANALYZER: self.gated.agents()[AgentType.CODEBASE_ANALYZER],
        }


@pytest.fixture
def team() -> Team:
    return make_team()


def make_team() -> Team:
    gate = asyncio.Event()
    return Team(
        ok=ScriptBook().on("*", Step(progress=["reading the code", "writing"], tool_calls=2)),
        # A code the retry policy does not retry: the task fails at once.
        failing=ScriptBook().on("*", Step(fail="validation_error")),
        blocking=ScriptBook().on("*", Step(block=True)),
        gated=ScriptBook().on("*", Step(progress=["before the gate"], wait=gate)),
        gate=gate,
    )


@contextlib.asynccontextmanager
async def live(
    make_live_server: Callable[..., Any], team: Team, **settings: Any
) -> AsyncIterator[LiveServer]:
    async with make_live_server(
        settings.pop("config", None), agents=team.agents(), shutdown_grace_s=0.5, **settings
    ) as server:
        yield server


async def read_until(process: asyncio.subprocess.Process, pattern: str) -> str:
    """Lines of the process's stdout up to the first one matching `pattern`."""
    assert process.stdout is not None
    seen = ""
    async with asyncio.timeout(30):
        while True:
            line = (await process.stdout.readline()).decode()
            assert line, f"stdout ended before {pattern!r}: {seen}"
            seen += line
            if re.search(pattern, line):
                return seen


async def test_login_submit_watch_list_show_and_exit_codes(
    make_live_server: Callable[..., Any], team: Team, tmp_path: Path
) -> None:
    async with live(make_live_server, team) as server:
        user = await add_user(server.app, Role.DEVELOPER)
        cli = Cli(tmp_path, server.url)
        logged_in = await cli.login(user.username)
        completed = await cli.run(
            "submit", "Add a health endpoint to the service", "--agent", "backend", "--watch"
        )
        failed = await cli.run(
            "submit", "Research the options for caching", "--agent", "research", "--watch"
        )
        listed = await cli.run("tasks", "list")
        as_json = await cli.run("tasks", "list", "--json")
        newest = json.loads(as_json.stdout)["items"][0]
        shown = await cli.run("tasks", "show", newest["id"])
        refused = await cli.run("tasks", "approve", newest["id"])

    assert logged_in.code == 0, logged_in.stderr
    assert logged_in.stdout == f"logged in to {server.url} as {user.username} (developer)\n"
    stored = json.loads(cli.credentials.read_text())
    assert set(stored) == {
        "url",
        "username",
        "access_token",
        "refresh_token",
        "expires_at",
        "sso",
    }
    assert stored["sso"] is False
    assert PASSWORD not in cli.credentials.read_text()
    assert stat.S_IMODE(cli.credentials.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.credentials.parent.stat().st_mode) == 0o700

    assert completed.code == 0, completed.stdout + completed.stderr
    assert completed.stdout.startswith("submitted task ")
    task_id = completed.stdout.split()[2]
    assert completed.seqs() == list(range(1, len(completed.seqs()) + 1))
    assert "tool.call" in completed.stdout and "reading the code" in completed.stdout
    assert f"{task_id}  completed" in completed.stdout.splitlines()

    assert failed.code == 1, failed.stdout + failed.stderr
    assert "validation_error" in failed.stdout

    assert listed.code == 0
    assert listed.stdout.split()[:6] == ["ID", "STATUS", "AGENT", "CPLX", "CREATED", "TASK"]
    assert newest["status"] == "failed" and newest["agent_type"] == "research"
    assert shown.code == 0 and newest["id"] in shown.stdout and "failed" in shown.stdout
    assert refused.code == 4
    assert "not awaiting approval (409 conflict)" in refused.stderr


async def test_a_cancelled_task_ends_watch_with_exit_code_3(
    make_live_server: Callable[..., Any], team: Team, tmp_path: Path
) -> None:
    async with live(make_live_server, team) as server:
        user = await add_user(server.app, Role.DEVELOPER)
        cli = Cli(tmp_path, server.url)
        assert (await cli.login(user.username)).code == 0
        watching = await cli.start(
            "submit", "Build the settings page", "--agent", "frontend", "--watch"
        )
        head = await read_until(watching, r"^submitted task ")
        task_id = head.split()[2]
        await asyncio.wait_for(team.blocking.blocked.wait(), 20)
        cancelled = await cli.run("tasks", "cancel", task_id)
        out, err = await asyncio.wait_for(watching.communicate(), 30)
    assert cancelled.code == 0, cancelled.stderr
    assert cancelled.stdout.startswith(f"task {task_id} is cancel")
    assert watching.returncode == 3, (out + err).decode()
    assert "task.cancelled" in out.decode()


async def test_watch_resumes_after_a_dropped_connection(
    make_live_server: Callable[..., Any], team: Team, tmp_path: Path
) -> None:
    async with live(make_live_server, team) as server, Proxy(server.port) as proxy:
        user = await add_user(server.app, Role.DEVELOPER)
        cli = Cli(tmp_path, proxy.url)
        assert (await cli.login(user.username)).code == 0
        watching = await cli.start(
            "submit", "Map the codebase of the service", "--agent", "codebase_analyzer", "--watch"
        )
        before = await read_until(watching, r"before the gate")
        proxy.cut()  # mid-task: the agent waits at the gate
        team.gate.set()
        out, err = await asyncio.wait_for(watching.communicate(), 30)
        async with server.http() as http:
            token = json.loads(cli.credentials.read_text())["access_token"]
            task_id = before.split()[2]
            response = await http.get(
                f"/api/v1/tasks/{task_id}/events", headers={"Authorization": f"Bearer {token}"}
            )
    result = Result(watching.returncode or 0, before + out.decode(), err.decode())
    assert watching.returncode == 0, result.stdout + result.stderr
    assert "resuming after #" in result.stdout
    table = [e["seq"] for e in response.json()["items"]]
    assert result.seqs() == table == list(range(1, len(table) + 1))


async def test_tokens_are_renewed_and_a_session_can_end(
    make_live_server: Callable[..., Any], team: Team, tmp_path: Path
) -> None:
    # Access tokens live one second, so every command renews before calling.
    config = security_config(access_ttl_s=1, leeway_s=0)
    async with live(make_live_server, team, config=config) as server:
        user = await add_user(server.app, Role.DEVELOPER)
        cli = Cli(tmp_path, server.url)
        assert (await cli.login(user.username)).code == 0
        first = json.loads(cli.credentials.read_text())["refresh_token"]
        # Two commands renewing at once must not present the same refresh token twice.
        together = await asyncio.gather(*(cli.run("tasks", "list") for _ in range(3)))
        renewed = json.loads(cli.credentials.read_text())["refresh_token"]
        after = await cli.run("tasks", "list")
        # Deactivating the user ends the session: renewing is refused.
        security = server.services.security
        await security.accounts.update(
            user.id, is_active=False, auditor=security.auditor, actor="test"
        )
        ended = await cli.run("tasks", "list")
        assert (await cli.run("logout")).code == 0
        logged_out = await cli.run("tasks", "list")
    assert [r.code for r in together] == [0, 0, 0], [r.stderr for r in together]
    assert renewed != first
    assert after.code == 0, after.stderr
    assert ended.code == 4
    assert f"the session has ended: run devteam login --url {server.url}" in ended.stderr
    assert logged_out.code == 4
    assert "not logged in" in logged_out.stderr
    assert not cli.credentials.exists()


async def test_login_again_watch_as_ndjson_and_a_readable_result(
    make_live_server: Callable[..., Any], team: Team, tmp_path: Path
) -> None:
    async with live(make_live_server, team) as server:
        user = await add_user(server.app, Role.DEVELOPER)
        cli = Cli(tmp_path, server.url)
        first = await cli.run(
            "login", "--url", server.url, "--username", user.username, "--password-stdin",
            stdin=PASSWORD,
        )  # fmt: skip
        # No --url and no DEVTEAM_URL: the service logged in to last, as the help says.
        cli.url = ""
        again = await cli.run(
            "login", "--username", user.username, "--password-stdin", stdin=PASSWORD
        )
        no_terminal = await cli.run("login", "--username", user.username, stdin="")
        submitted = await cli.run(
            "submit", "Add a health endpoint to the service", "--agent", "backend", "--json"
        )
        task_id = json.loads(submitted.stdout)["id"]
        watched = await cli.run("watch", task_id, "--json")
        shown = await cli.run("tasks", "show", task_id)

    assert first.code == again.code == 0, first.stderr + again.stderr
    assert again.stdout == f"logged in to {server.url} as {user.username} (developer)\n"
    assert no_terminal.code == 2
    assert (
        no_terminal.stderr == "devteam: no terminal to ask for the password: use --password-stdin\n"
    )
    assert watched.code == 0, watched.stderr
    events = [json.loads(line) for line in watched.stdout.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "task.completed" and events[-1]["task_id"] == task_id
    assert shown.code == 0, shown.stderr
    assert "result: root done" in shown.stdout
    assert "Echo:\n  key: root\n  attempt: 1\n" in shown.stdout
