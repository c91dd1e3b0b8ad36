"""The command line on the API: log in, submit tasks, watch them live, list, cancel, approve.

Commands talk to a running service over HTTP (httpx) and WebSocket (websockets);
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
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import IntEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import websockets
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL = {"completed", "failed", "cancelled"}
TERMINAL_EVENTS = {"task.completed", "task.failed", "task.cancelled"}
REFRESH_MARGIN_S = 30.0
"""Renew an access token this long before it expires."""
GIVE_UP_AFTER_S = 120.0
"""`watch` stops retrying after this long without reaching the service."""


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
    provider: dict[str, Any] | None = None
    """Signed in with the identity provider (`login --sso`): where its tokens are renewed."""

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

    @classmethod
    def of(
        cls,
        url: str,
        username: str,
        tokens: dict[str, Any],
        provider: dict[str, Any] | None = None,
    ) -> Credentials:
        return cls(
            url=url,
            username=username,
            access_token=tokens["access_token"],
            refresh_token=tokens.get("refresh_token") or "",
            expires_at=time.time() + float(tokens.get("expires_in", 300)),
            provider=provider,
        )


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


def resolve_url(given: str | None) -> str:
    """`--url` / `DEVTEAM_URL`, else the URL logged in to, else the default."""
    if given:
        return given.rstrip("/")
    stored = Credentials.load()
    return stored.url if stored is not None else DEFAULT_URL


def websocket_url(base: str) -> str:
    parts = urlsplit(base)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/api/v1/ws", "", ""))


# -- the HTTP client --------------------------------------------------------------------


def _error_of(response: httpx.Response) -> CliError:
    try:
        error = response.json()["error"]
        return CliError(
            f"{error['message']} ({response.status_code} {error['code']})", error["code"]
        )
    except (ValueError, KeyError, TypeError):
        return CliError(f"the service answered {response.status_code}")


class Api:
    """Calls the service as the logged-in user, renewing the access token when due."""

    def __init__(self, url: str, http: httpx.AsyncClient) -> None:
        self.url = url
        self.http = http
        self.path = credentials_path()

    def credentials(self) -> Credentials:
        stored = Credentials.load(self.path)
        if stored is None:
            raise CliError(f"not logged in: run devteam login --url {self.url}")
        if stored.url != self.url:
            raise CliError(
                f"logged in to {stored.url}, not {self.url}: run devteam login --url {self.url}"
            )
        return stored

    async def access_token(self) -> str:
        stored = self.credentials()
        if stored.expires_at - REFRESH_MARGIN_S > time.time():
            return stored.access_token
        return (await self.refresh(stored.refresh_token)).access_token

    async def refresh(self, seen: str) -> Credentials:
        """New tokens, unless another command already renewed the `seen` refresh token."""
        with _locked(self.path):
            stored = self.credentials()
            if stored.refresh_token != seen and stored.expires_at - REFRESH_MARGIN_S > time.time():
                return stored
            if stored.provider is not None:
                return await self._refresh_at_provider(stored)
            response = await self.http.post(
                "/api/v1/auth/refresh", json={"refresh_token": stored.refresh_token}
            )
            if response.status_code == 401:
                raise CliError(f"the session has ended: run devteam login --url {self.url}")
            if response.is_error:
                raise _error_of(response)
            renewed = Credentials.of(self.url, stored.username, response.json())
            renewed.save(self.path)
            return renewed

    async def _refresh_at_provider(self, stored: Credentials) -> Credentials:
        """Renew single sign-on tokens at the identity provider's token endpoint."""
        from devteam import cli_sso

        assert stored.provider is not None
        again = f"the sign-in has ended: run devteam login --sso --url {self.url}"
        if not stored.refresh_token:
            raise CliError(again)
        try:
            tokens = await cli_sso.refresh(self.http, stored.provider, stored.refresh_token)
            tokens = cli_sso.bearer_of(tokens, stored.provider.get("token_type", "access_token"))
        except cli_sso.SignInError:
            raise CliError(again) from None
        tokens.setdefault("refresh_token", stored.refresh_token)
        renewed = Credentials.of(self.url, stored.username, tokens, stored.provider)
        renewed.save(self.path)
        return renewed

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        token = await self.access_token()
        response = await self._send(method, path, token, **kwargs)
        if response.status_code == 401:
            # Expired or ended early (logout, restart without a fixed secret): renew once.
            renewed = await self.refresh(self.credentials().refresh_token)
            response = await self._send(method, path, renewed.access_token, **kwargs)
        if response.is_error:
            raise _error_of(response)
        return response.json() if response.content else None

    async def _send(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        try:
            return await self.http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise CliError(f"cannot reach {self.url}: {exc}") from None


@contextlib.asynccontextmanager
async def open_api(url: str | None) -> AsyncIterator[Api]:
    base = resolve_url(url)
    async with httpx.AsyncClient(base_url=base, timeout=30.0) as http:
        yield Api(base, http)


def run(main: Any) -> int:
    """Run a command coroutine; print a `CliError` as one line and return its exit code."""
    try:
        return int(asyncio.run(main))
    except CliError as exc:
        print(f"devteam: {exc.message}", file=sys.stderr)
        return ExitCode.ERROR
    except KeyboardInterrupt:
        return 130


# -- login, logout ----------------------------------------------------------------------


async def login(url: str | None, username: str, password: str) -> int:
    base = (url or DEFAULT_URL).rstrip("/")
    async with httpx.AsyncClient(base_url=base, timeout=30.0) as http:
        try:
            response = await http.post(
                "/api/v1/auth/token", data={"username": username, "password": password}
            )
        except httpx.TransportError as exc:
            raise CliError(f"cannot reach {base}: {exc}") from None
        if response.is_error:
            raise _error_of(response)
        credentials = Credentials.of(base, username, response.json())
        credentials.save()
        me = await http.get(
            "/api/v1/users/me", headers={"Authorization": f"Bearer {credentials.access_token}"}
        )
        role = me.json().get("role", "?") if me.is_success else "?"
    print(f"logged in to {base} as {username} ({role})")
    return ExitCode.COMPLETED


async def login_sso(url: str | None, *, open_browser: bool = True) -> int:
    """Sign in at the service's identity provider: device code where offered, else a browser."""
    from devteam import cli_sso

    base = (url or resolve_url(None)).rstrip("/")

    def show_code(verification_uri: str, user_code: str, complete: str | None) -> None:
        print(f"To sign in, open {complete or verification_uri}", flush=True)
        print(f"and confirm the code {user_code}", flush=True)

    def show_url(authorization_url: str) -> None:
        print(
            f"Opening your browser to sign in; if it does not open, visit:\n{authorization_url}",
            flush=True,
        )

    async with httpx.AsyncClient(base_url=base, timeout=30.0) as http:
        try:
            provider = await cli_sso.discover(http, base)
            if provider.device_authorization_endpoint is not None:
                tokens = await cli_sso.device_flow(http, provider, show_code)
            else:
                tokens = await cli_sso.code_flow(
                    http, provider, show_url, open_browser=open_browser
                )
            tokens = cli_sso.bearer_of(tokens, provider.token_type)
        except cli_sso.SignInError as exc:
            raise CliError(str(exc)) from None
        me = await http.get(
            "/api/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        if me.is_error:
            raise _error_of(me)
        user = me.json()
        Credentials.of(base, user["username"], tokens, provider.as_dict()).save()
    print(f"logged in to {base} as {user['username']} ({user['role']}) through {provider.issuer}")
    return ExitCode.COMPLETED


async def logout(url: str | None) -> int:
    async with open_api(url) as api:
        with contextlib.suppress(CliError):
            await api.request("POST", "/api/v1/auth/logout")
        with contextlib.suppress(FileNotFoundError):
            api.path.unlink()
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
    async with open_api(url) as api:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        task = await api.request("POST", "/api/v1/tasks", json=body, headers=headers)
        if as_json and not watch_it:
            print(json.dumps(task, indent=2))
            return ExitCode.COMPLETED
        print(f"submitted task {task['id']} ({task['status']})")
        if not watch_it:
            print(f"follow it with: devteam watch {task['id']}")
            return ExitCode.COMPLETED
        return await Watcher(api, task["id"]).run()


async def list_tasks(url: str | None, filters: dict[str, Any], *, as_json: bool) -> int:
    async with open_api(url) as api:
        page = await api.request(
            "GET", "/api/v1/tasks", params={k: v for k, v in filters.items() if v is not None}
        )
    if as_json:
        print(json.dumps(page, indent=2))
        return ExitCode.COMPLETED
    console = Console()
    table = Table(box=None)
    # Ids are what the other commands take: never shortened.
    table.add_column("ID", no_wrap=True, min_width=36)
    for name in ("STATUS", "AGENT", "CPLX", "CREATED"):
        table.add_column(name, no_wrap=True)
    table.add_column("TASK", no_wrap=True, overflow="ellipsis", max_width=50)
    for task in page["items"]:
        table.add_row(
            task["id"],
            _status_text(task["status"]),
            task["agent_type"] or "-",
            str(task["complexity"]),
            _short_time(task["created_at"]),
            _one_line(task["task"], 50),
        )
    console.print(table)
    if page["next_cursor"]:
        console.print(f"more: --cursor {page['next_cursor']}")
    return ExitCode.COMPLETED


async def show_task(url: str | None, task_id: str, *, as_json: bool) -> int:
    async with open_api(url) as api:
        task = await api.request("GET", f"/api/v1/tasks/{task_id}")
    if as_json:
        print(json.dumps(task, indent=2))
    else:
        print_task(Console(), task)
    return ExitCode.COMPLETED


async def cancel_task(url: str | None, task_id: str) -> int:
    async with open_api(url) as api:
        task = await api.request("POST", f"/api/v1/tasks/{task_id}/cancel")
    print(f"task {task['id']} is {task['status']}")
    return ExitCode.COMPLETED


async def approve_task(url: str | None, task_id: str, approved: bool, comment: str | None) -> int:
    async with open_api(url) as api:
        body: dict[str, Any] = {"approved": approved}
        if comment:
            body["comment"] = comment
        task = await api.request("POST", f"/api/v1/tasks/{task_id}/approve", json=body)
    print(f"task {task['id']} is {task['status']}")
    return ExitCode.COMPLETED


async def watch(url: str | None, task_id: str) -> int:
    async with open_api(url) as api:
        return await Watcher(api, task_id).run()


def print_task(console: Console, task: dict[str, Any]) -> None:
    console.print(f"[bold]{task['id']}[/bold]  {_status_markup(task['status'])}")
    console.print(_one_line(task["task"], 200))
    facts = [
        f"type {task['task_type']}",
        f"agent {task['agent_type'] or 'auto'}",
        f"complexity {task['complexity']}",
        f"priority {task['priority']}",
    ]
    if task["project_id"]:
        facts.append(f"project {task['project_id']}")
    console.print(" · ".join(facts))
    console.print(_usage_line(task["usage"]))
    if task["subtasks"]:
        table = Table("KEY", "TASK", "AGENT", "PHASE", "STATUS", "TRY", box=None)
        for sub in task["subtasks"]:
            table.add_row(
                sub["key"] or "-",
                _one_line(sub.get("task") or "", 60),
                sub["agent_type"] or "-",
                sub["phase"] or "-",
                _status_text(sub["status"]),
                str(sub["attempt"]),
            )
        console.print(table)
    if task["error"]:
        console.print(f"[red]{task['error']['code']}[/red]: {task['error']['message']}")
    result = task.get("result") or {}
    if result.get("summary"):
        console.print(f"result: {result['summary']}")


# -- watch ------------------------------------------------------------------------------


@dataclass
class _Row:
    key: str
    task: str = ""
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
            if data.get("task"):
                row.task = str(data["task"])
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
                row = self.rows.setdefault(step["id"], _Row(key=step.get("key") or step["id"][:8]))
                row.agent = step.get("agent_type") or "-"
                row.task = str(step.get("task") or row.task)
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
        table = Table("SUBTASK", "TASK", "AGENT", "STATUS", "TRY", "TOOLS", "TOKENS", box=None)
        for row in self.rows.values():
            table.add_row(
                row.key,
                _one_line(row.task, 40) if row.task else "-",
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
    """Follows one task over the WebSocket until it ends, resuming after every drop."""

    def __init__(self, api: Api, task_id: str, console: Console | None = None) -> None:
        self.api = api
        self.task_id = task_id
        # Soft wrap: one event stays one line, however narrow the terminal or pipe.
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.progress = Progress(task_id)
        self.live: Live | None = None
        self.subscribed = False
        """The current connection got as far as `subscribed`."""

    def note(self, text: str) -> None:
        self.console.print(Text(text, style="dim"))

    async def run(self) -> int:
        interactive = self.console.is_terminal
        with contextlib.ExitStack() as stack:
            if interactive:
                self.live = stack.enter_context(
                    Live(self.progress.view(), console=self.console, refresh_per_second=8)
                )
            await self._follow()
        task = await self.api.request("GET", f"/api/v1/tasks/{self.task_id}")
        self.console.print()
        print_task(self.console, task)
        return exit_code_for(task["status"])

    async def _follow(self) -> None:
        delay = 0.2
        failing_since: float | None = None
        while True:
            self.subscribed = False
            try:
                if await self._session():
                    return
                self.note(f"connection closed; resuming after #{self.progress.last_seq}")
            except websockets.ConnectionClosed as exc:
                if exc.rcvd is not None and exc.rcvd.code == 4401:
                    # The access token expired (or the session ended): renew, reconnect.
                    await self.api.refresh(self.api.credentials().refresh_token)
                    continue
                self.note(f"connection lost; resuming after #{self.progress.last_seq}")
            except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
                self.note(f"cannot connect ({type(exc).__name__}); retrying in {delay:.1f} s")
            if self.subscribed:
                delay, failing_since = 0.2, None
            else:
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > GIVE_UP_AFTER_S:
                    raise CliError(f"cannot reach {self.api.url}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _session(self) -> bool:
        """One connection: subscribe after the last event seen; True once the task ended."""
        token = await self.api.access_token()
        async with websockets.connect(
            websocket_url(self.api.url),
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=10,
            proxy=None,
        ) as socket:
            await self._subscribe(socket)
            async for raw in socket:
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "subscribed":
                    self.subscribed = True
                elif kind == "event":
                    event = message["event"]
                    if event["seq"] <= self.progress.last_seq:
                        continue
                    self.progress.last_seq = event["seq"]
                    self.console.print(self.progress.apply(event), markup=False)
                    if self.live is not None:
                        self.live.update(self.progress.view())
                    if self.progress.finished(event):
                        return True
                elif kind == "lagged":
                    self.note(f"fell behind; resuming after #{message['last_seq']}")
                    self.progress.last_seq = int(message["last_seq"])
                    await self._subscribe(socket)
                elif kind == "error":
                    raise CliError(message.get("message", "refused"), message.get("code"))
        return False

    async def _subscribe(self, socket: Any) -> None:
        await socket.send(
            json.dumps(
                {"type": "subscribe", "task_id": self.task_id, "after": self.progress.last_seq}
            )
        )


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


def _short_time(value: str) -> str:
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M")
    return value


def _usage_line(usage: dict[str, Any]) -> str:
    return (
        f"usage: {usage['requests']} requests · {usage['input_tokens']}+"
        f"{usage['output_tokens']} tokens · {usage['tool_calls']} tool calls · "
        f"${usage['cost_usd']:.4f}"
    )
