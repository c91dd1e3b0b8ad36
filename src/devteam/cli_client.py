"""The command line on the API: log in, submit tasks, watch them live, list, cancel, approve.

Commands talk to a running service through `devteam.client` (HTTP and WebSocket);
`cli.py` imports this module only when one of them runs, so `devteam --help` stays
quick.

Credentials live in `~/.config/devteam/credentials.json` (or under
`$XDG_CONFIG_HOME`), readable by the user alone. An expired access token is
renewed with the refresh token, under a file lock, so several commands running
at once do not present the same refresh token twice (which would end the session).

Exit codes: 0 done (for `watch` and `submit --watch`: the task completed),
1 the task failed, 2 a usage error, 3 the task was cancelled, 4 the service
refused the request or could not be reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from devteam.client import (
    AsyncClient,
    ClientError,
    Event,
    PlanResult,
    SessionEnded,
    Task,
    Tokens,
    websocket_url,
)
from devteam.domain.events import TERMINAL_EVENTS
from devteam.domain.tasks import Usage

__all__ = ["websocket_url"]

DEFAULT_URL = "http://127.0.0.1:8000"


class ExitCode(IntEnum):
    COMPLETED = 0
    FAILED = 1
    USAGE = 2
    CANCELLED = 3
    ERROR = 4


def exit_code_for(status: str) -> ExitCode:
    if status == "completed":
        return ExitCode.COMPLETED
    if status == "cancelled":
        return ExitCode.CANCELLED
    return ExitCode.FAILED


class CliError(Exception):
    """Something the user should read, ending the command with exit code 4."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# -- credentials ------------------------------------------------------------------------


def credentials_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "devteam" / "credentials.json"


@dataclass
class Credentials:
    url: str
    username: str
    access_token: str
    refresh_token: str
    expires_at: float
    """Unix time the access token expires."""
    sso: bool = False
    """Signed in at the identity provider (`login --sso`): renewed through the service's
    `POST /api/v1/auth/oidc/refresh`."""

    @classmethod
    def load(cls, path: Path | None = None) -> Credentials | None:
        path = path or credentials_path()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, path: Path | None = None) -> None:
        """Write the file readable by its owner alone (0600), atomically."""
        path = path or credentials_path()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(self), handle, indent=2)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock next to the credentials file (where the OS has flock)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class CredentialsFile:
    """The client's token store: the credentials file, shared by every command.

    Renewals happen under a file lock, so several commands running at once do not
    present the same refresh token twice (which would end the session).
    """

    def __init__(self, url: str, username: str | None = None, path: Path | None = None) -> None:
        self.url = url
        self.username = username
        self.path = path or credentials_path()

    def load(self) -> Tokens | None:
        stored = Credentials.load(self.path)
        if stored is None:
            return None
        if stored.url != self.url:
            raise SessionEnded(f"logged in to {stored.url}, not {self.url}")
        self.username = self.username or stored.username
        return Tokens(
            stored.access_token, stored.refresh_token or None, stored.expires_at, sso=stored.sso
        )

    def save(self, tokens: Tokens | None) -> None:
        if tokens is None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        Credentials(
            url=self.url,
            username=self.username or "?",
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token or "",
            expires_at=tokens.expires_at,
            sso=tokens.sso,
        ).save(self.path)

    def lock(self) -> contextlib.AbstractContextManager[None]:
        return _locked(self.path)


def resolve_url(given: str | None) -> str:
    """`--url` / `DEVTEAM_URL`, else the URL logged in to, else the default."""
    if given:
        return given.rstrip("/")
    stored = Credentials.load()
    return stored.url if stored is not None else DEFAULT_URL


@contextlib.asynccontextmanager
async def open_client(url: str | None, username: str | None = None) -> AsyncIterator[AsyncClient]:
    base = resolve_url(url)
    async with AsyncClient(base, store=CredentialsFile(base, username)) as client:
        yield client


def run(main: Any) -> int:
    """Run a command coroutine; print a refusal as one line and return its exit code."""
    try:
        return int(asyncio.run(main))
    except SessionEnded as exc:
        base = resolve_url(os.environ.get("DEVTEAM_URL"))
        print(f"devteam: {exc.message}: run devteam login --url {base}", file=sys.stderr)
        return ExitCode.ERROR
    except (CliError, ClientError) as exc:
        print(f"devteam: {exc.message}", file=sys.stderr)
        return ExitCode.ERROR
    except KeyboardInterrupt:
        return 130


def _json(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return json.dumps(value, indent=2)


# -- login, logout ----------------------------------------------------------------------


async def login(url: str | None, username: str, password: str) -> int:
    async with open_client(url, username) as client:
        await client.login(username, password)
        try:
            role = (await client.me()).get("role", "?")
        except ClientError:
            role = "?"
        print(f"logged in to {client.url} as {username} ({role})")
    return ExitCode.COMPLETED


async def login_sso(url: str | None, *, open_browser: bool = True) -> int:
    """Sign in at the service's identity provider: device code where offered, else a browser."""
    from devteam import cli_sso

    base = resolve_url(url)

    def show_code(verification_uri: str, user_code: str, complete: str | None) -> None:
        print(f"To sign in, open {complete or verification_uri}", flush=True)
        print(f"and confirm the code {user_code}", flush=True)

    def show_url(authorization_url: str) -> None:
        print(
            f"Opening your browser to sign in; if it does not open, visit:\n{authorization_url}",
            flush=True,
        )

    store = CredentialsFile(base)
    async with AsyncClient(base, store=store) as client:
        try:
            provider = await cli_sso.discover(client.http, base)
            if provider.device_authorization_endpoint is not None:
                answer = await cli_sso.device_flow(client.http, provider, show_code)
            else:
                answer = await cli_sso.code_flow(
                    client.http, provider, show_url, open_browser=open_browser
                )
            answer = cli_sso.bearer_of(answer, provider.token_type)
        except cli_sso.SignInError as exc:
            raise CliError(str(exc)) from None
        tokens = Tokens.of(answer)
        tokens.sso = True
        with store.lock():
            store.save(tokens)
        user = await client.me()
        store.username = str(user["username"])
        with store.lock():
            store.save(tokens)
    print(f"logged in to {base} as {user['username']} ({user['role']}) through {provider.issuer}")
    return ExitCode.COMPLETED


async def logout(url: str | None) -> int:
    async with open_client(url) as client:
        with contextlib.suppress(SessionEnded):
            await client.logout()
        with contextlib.suppress(FileNotFoundError):
            credentials_path().unlink()
    print("logged out")
    return ExitCode.COMPLETED


# -- tasks ------------------------------------------------------------------------------


async def submit(
    url: str | None,
    body: dict[str, Any],
    *,
    watch_it: bool,
    as_json: bool,
    idempotency_key: str | None,
) -> int:
    async with open_client(url) as client:
        task = await client.submit(body, idempotency_key=idempotency_key)
        if as_json and not watch_it:
            print(_json(task))
            return ExitCode.COMPLETED
        if not as_json:
            print(f"submitted task {task.id} ({task.status})")
        if not watch_it:
            print(f"follow it with: devteam watch {task.id}")
            return ExitCode.COMPLETED
        return await Watcher(client, str(task.id), as_json=as_json).run()


async def list_tasks(url: str | None, filters: dict[str, Any], *, as_json: bool) -> int:
    async with open_client(url) as client:
        page = await client.list(**{k: v for k, v in filters.items() if v is not None})
    if as_json:
        print(_json(page))
        return ExitCode.COMPLETED
    console = Console()
    table = Table(box=None)
    # Ids are what the other commands take: never shortened.
    table.add_column("ID", no_wrap=True, min_width=36)
    for name in ("STATUS", "AGENT", "CPLX", "CREATED"):
        table.add_column(name, no_wrap=True)
    table.add_column("TASK", no_wrap=True, overflow="ellipsis", max_width=50)
    for task in page.items:
        table.add_row(
            str(task.id),
            _status_text(task.status),
            task.agent_type or "-",
            str(task.complexity),
            task.created_at.strftime("%Y-%m-%d %H:%M"),
            _one_line(task.task, 50),
        )
    console.print(table)
    if page.next_cursor:
        console.print(f"more: --cursor {page.next_cursor}")
    return ExitCode.COMPLETED


async def show_task(url: str | None, task_id: str, *, as_json: bool) -> int:
    async with open_client(url) as client:
        task = await client.get(task_id)
    if as_json:
        print(_json(task))
    else:
        print_task(Console(highlight=False, soft_wrap=True), task, full=True)
    return ExitCode.COMPLETED


async def cancel_task(url: str | None, task_id: str) -> int:
    async with open_client(url) as client:
        task = await client.cancel(task_id)
    print(f"task {task.id} is {task.status}")
    return ExitCode.COMPLETED


async def approve_task(url: str | None, task_id: str, approved: bool, comment: str | None) -> int:
    async with open_client(url) as client:
        task = await client.approve(task_id, approved, comment)
    print(f"task {task.id} is {task.status}")
    return ExitCode.COMPLETED


async def watch(url: str | None, task_id: str, *, as_json: bool = False) -> int:
    async with open_client(url) as client:
        return await Watcher(client, task_id, as_json=as_json).run()


def print_task(console: Console, task: Task, *, full: bool = False) -> None:
    """The task's facts, subtasks, error and result; `full` prints the whole typed result."""
    console.print(f"[bold]{task.id}[/bold]  {_status_markup(task.status)}")
    console.print(_one_line(task.task, 200), markup=False)
    facts = [
        f"type {task.task_type}",
        f"agent {task.agent_type or 'auto'}",
        f"complexity {task.complexity}",
        f"priority {task.priority}",
    ]
    if task.project_id:
        facts.append(f"project {task.project_id}")
    console.print(" · ".join(facts), markup=False)
    console.print(_usage_line(task.usage), markup=False)
    if task.subtasks:
        table = Table("KEY", "AGENT", "PHASE", "STATUS", "TRY", box=None)
        table.add_column("TASK", no_wrap=True, overflow="ellipsis", max_width=60)
        for sub in task.subtasks:
            table.add_row(
                sub.key or "-",
                sub.agent_type or "-",
                sub.phase or "-",
                _status_text(sub.status),
                str(sub.attempt),
                _one_line(sub.task, 60),
            )
        console.print(table)
    if task.error:
        console.print(Text.assemble((task.error.code, "red"), f": {task.error.message}"))
    result = task.result
    if result is None:
        return
    if isinstance(result, PlanResult):
        print_plan_result(console, result)
        return
    if result.summary:
        console.print(f"result: {result.summary}", markup=False)
    if full:
        kind = result.output_type or "output"
        console.print(Text(f"{kind}:", style="bold"))
        for line in render_output(result.output):
            console.print(line, markup=False)


def print_plan_result(console: Console, result: PlanResult) -> None:
    """A planned task's outcome: verification, review, delivery, and each subtask's summary."""
    if result.verified is not None:
        console.print(
            Text.assemble(
                "verified: ",
                ("yes", "green") if result.verified else ("no", "yellow"),
            )
        )
    if result.review:
        verdict = result.review.get("verdict", "?")
        console.print(f"review: {verdict} (round {result.review.get('round', 1)})", markup=False)
    if result.delivery:
        console.print(f"delivery: {result.delivery.get('summary', '')}", markup=False)
    for key, outcome in result.subtasks.items():
        summary = (outcome.result or {}).get("summary") or (
            outcome.error.message if outcome.error else ""
        )
        console.print(f"{key}: {_one_line(str(summary), 160)}", markup=False)


def render_output(output: dict[str, Any]) -> list[str]:
    """A typed result as an indented outline; a unified diff goes last, as it is."""
    lines: list[str] = []
    diff = output.get("diff")
    _outline(lines, {k: v for k, v in output.items() if k not in ("diff", "summary")}, 1)
    if isinstance(diff, str) and diff:
        lines.append("  diff:")
        lines.extend(diff.rstrip("\n").splitlines())
    return lines


def _scalar(value: Any) -> str:
    return " ".join(str(value).split()) if isinstance(value, str) else json.dumps(value)


def _outline(lines: list[str], value: Any, depth: int) -> None:
    pad = "  " * depth
    if isinstance(value, dict):
        for key, item in value.items():
            if item in (None, "", [], {}):
                continue
            if isinstance(item, dict | list):
                lines.append(f"{pad}{key}:")
                _outline(lines, item, depth + 1)
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                scalars = {k: v for k, v in item.items() if not isinstance(v, dict | list)}
                nested = {k: v for k, v in item.items() if isinstance(v, dict | list)}
                shown = ", ".join(
                    f"{k}={_scalar(v)}" for k, v in scalars.items() if v not in (None, "")
                )
                lines.append(f"{pad}- {shown}")
                _outline(lines, nested, depth + 1)
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(f"{pad}{_scalar(value)}")


# -- projects ---------------------------------------------------------------------------


async def add_project(
    url: str | None, name: str, git_url: str, branch: str | None, *, wait: bool, as_json: bool
) -> int:
    async with open_client(url) as client:
        project = await client.add_project(name, git_url, branch)
        while wait and project.state == "cloning":
            await asyncio.sleep(0.5)  # the API announces a clone's end by its state only
            project = await client.project(name)
    if as_json:
        print(_json(project))
    else:
        print(f"project {project.name} is {project.state}")
        if project.error:
            print(f"error: {project.error}")
    return ExitCode.FAILED if project.state == "failed" else ExitCode.COMPLETED


async def list_projects(url: str | None, *, as_json: bool) -> int:
    async with open_client(url) as client:
        projects = await client.projects()
    if as_json:
        print(json.dumps([p.model_dump(mode="json") for p in projects], indent=2))
        return ExitCode.COMPLETED
    table = Table("NAME", "STATE", "COMMIT", "URL", box=None)
    for project in projects:
        state = project.state if project.managed else f"{project.state} (by hand)"
        commit = project.last_commit.sha[:10] if project.last_commit else "-"
        table.add_row(project.name, state, commit, project.git_url)
    Console().print(table)
    return ExitCode.COMPLETED


async def show_project(url: str | None, name: str, *, refresh: bool, as_json: bool) -> int:
    async with open_client(url) as client:
        project = await (client.refresh_project(name) if refresh else client.project(name))
    if as_json:
        print(_json(project))
        return ExitCode.COMPLETED
    print(f"{project.name}  {project.state}{'' if project.managed else ' (placed by hand)'}")
    print(f"url: {project.git_url}")
    if project.default_branch:
        print(f"branch: {project.default_branch}")
    if project.last_commit:
        commit = project.last_commit
        print(f"last commit: {commit.sha[:12]} {commit.subject} ({commit.author}, "
              f"{commit.committed_at:%Y-%m-%d %H:%M})")  # fmt: skip
    if project.error:
        print(f"error: {project.error}")
    if project.checks is not None:
        print("checks:")
        for line in render_output({"checks": project.checks}):
            print(line)
    return ExitCode.FAILED if project.error else ExitCode.COMPLETED


async def remove_project(url: str | None, name: str) -> int:
    async with open_client(url) as client:
        await client.remove_project(name)
    print(f"project {name} removed")
    return ExitCode.COMPLETED


# -- watch ------------------------------------------------------------------------------


@dataclass
class _Row:
    key: str
    agent: str = "-"
    status: str = "pending"
    attempt: int = 1
    tool_calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0


@dataclass
class Progress:
    """What the events of one task said so far."""

    task_id: str
    status: str = "pending"
    rows: dict[str, _Row] = field(default_factory=dict)
    tool_calls: int = 0
    last_seq: int = 0

    def apply(self, event: dict[str, Any]) -> str:
        """Take one event in; return its line for the log."""
        data: dict[str, Any] = event["data"]
        kind: str = event["type"]
        subtask = event["subtask_id"]
        who = "task"
        if subtask is not None:
            row = self.rows.setdefault(subtask, _Row(key=data.get("key") or subtask[:8]))
            who = row.key
            if data.get("agent_type"):
                row.agent = data["agent_type"]
            if "status" in data:
                row.status = data["status"]
                row.attempt = int(data.get("attempt", row.attempt))
            if kind == "tool.call":
                row.tool_calls += 1
            if isinstance(data.get("usage"), dict):
                row.tokens = int(data["usage"].get("input_tokens", 0)) + int(
                    data["usage"].get("output_tokens", 0)
                )
                row.cost_usd = float(data["usage"].get("cost_usd", 0.0))
        elif "status" in data and kind != "rule.decision":
            self.status = data["status"]
        if kind == "task.planned":
            for step in data.get("subtasks", []):
                self.rows.setdefault(
                    step["id"], _Row(key=step.get("key") or step["id"][:8])
                ).agent = step.get("agent_type") or "-"
        if kind == "tool.call":
            self.tool_calls += 1
        return f"#{event['seq']:<4} {kind:<22} {who:<14} {_detail(kind, data)}".rstrip()

    def finished(self, event: dict[str, Any]) -> bool:
        if event["type"] not in TERMINAL_EVENTS:
            return False
        watched_subtask = event["subtask_id"] == self.task_id
        return event["subtask_id"] is None or watched_subtask

    def summary(self) -> str:
        tokens = sum(row.tokens for row in self.rows.values())
        cost = sum(row.cost_usd for row in self.rows.values())
        return (
            f"task {self.task_id}: {self.status} · {self.tool_calls} tool calls · "
            f"{tokens} tokens · ${cost:.4f} (finished subtasks)"
        )

    def view(self) -> Group:
        """The live view: a summary line over a table of the subtasks."""
        table = Table("SUBTASK", "AGENT", "STATUS", "TRY", "TOOLS", "TOKENS", box=None)
        for row in self.rows.values():
            table.add_row(
                row.key,
                row.agent,
                _status_text(row.status),
                str(row.attempt),
                str(row.tool_calls),
                str(row.tokens) if row.tokens else "-",
            )
        return Group(Text(self.summary(), style="bold"), table)


def _detail(kind: str, data: dict[str, Any]) -> str:
    if kind == "task.progress" and "message" in data:
        return str(data["message"])[:120]
    if kind == "tool.call":
        return f"{data.get('server')}.{data.get('tool')} {data.get('outcome')}"
    if kind == "rule.decision":
        return f"{data.get('rule')}: {data.get('decision')} ({data.get('reason', '')})"[:160]
    if kind == "task.planned":
        steps = data.get("subtasks", [])
        if not steps:
            return "runs as one task"
        return f"{len(steps)} subtasks: " + ", ".join(str(s.get("key")) for s in steps)[:140]
    parts = []
    if "status" in data:
        parts.append(str(data["status"]))
    if data.get("agent_type"):
        parts.append(str(data["agent_type"]))
    if int(data.get("attempt", 1)) > 1:
        parts.append(f"attempt {data['attempt']}")
    if isinstance(data.get("error"), dict):
        parts.append(f"{data['error'].get('code')}: {data['error'].get('message')}")
    elif data.get("reason"):
        parts.append(str(data["reason"]))
    return " · ".join(parts)[:160]


class Watcher:
    """Follows one task until it ends (the client resumes after every drop).

    `as_json` prints each event as one JSON line (NDJSON) and nothing else on stdout.
    """

    def __init__(
        self,
        client: AsyncClient,
        task_id: str,
        console: Console | None = None,
        *,
        as_json: bool = False,
    ) -> None:
        self.client = client
        self.task_id = task_id
        self.as_json = as_json
        # Soft wrap: one event stays one line, however narrow the terminal or pipe.
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.notes = (
            Console(stderr=True, highlight=False, soft_wrap=True) if as_json else self.console
        )
        self.progress = Progress(task_id)
        self.live: Live | None = None

    def note(self, text: str) -> None:
        self.notes.print(Text(text, style="dim"))

    async def run(self) -> int:
        interactive = self.console.is_terminal and not self.as_json
        with contextlib.ExitStack() as stack:
            if interactive:
                self.live = stack.enter_context(
                    Live(self.progress.view(), console=self.console, refresh_per_second=8)
                )
            async for event in self.client.events(
                self.task_id, self.progress.last_seq, on_reconnect=self.note
            ):
                self.show(event)
        task = await self.client.get(self.task_id)
        if not self.as_json:
            self.console.print()
            print_task(self.console, task)
        return exit_code_for(task.status)

    def show(self, event: Event) -> None:
        data = event.model_dump(mode="json")
        self.progress.last_seq = event.seq
        if self.as_json:
            print(json.dumps(data, separators=(",", ":")), flush=True)
            return
        self.console.print(self.progress.apply(data), markup=False)
        if self.live is not None:
            self.live.update(self.progress.view())


# -- formatting -------------------------------------------------------------------------

_STATUS_STYLES = {
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
    "cancelling": "yellow",
    "in_progress": "cyan",
    "awaiting_approval": "magenta",
}


def _status_text(status: str) -> Text:
    return Text(status, style=_STATUS_STYLES.get(status, ""))


def _status_markup(status: str) -> str:
    style = _STATUS_STYLES.get(status)
    return f"[{style}]{status}[/{style}]" if style else status


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _usage_line(usage: Usage) -> str:
    return (
        f"usage: {usage.requests} requests · {usage.input_tokens}+"
        f"{usage.output_tokens} tokens · {usage.tool_calls} tool calls · "
        f"${usage.cost_usd:.4f}"
    )
