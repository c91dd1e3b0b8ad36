"""A Python client of the DevTeam API: `AsyncClient` and its blocking twin `Client`.

```python
async with AsyncClient("http://127.0.0.1:8000") as client:
    await client.login("alice", "correct horse battery staple")
    task = await client.submit(TaskRequest(task="Add a health endpoint", complexity=3))
    async for event in client.events(task.id):
        print(event.seq, event.type, event.data)
    print((await client.get(task.id)).result)
```

The access token is renewed with the refresh token before it expires and, when
the service answers `401` (`token_expired`, or a session that ended early), once
more transparently. Tokens are kept in a `TokenStore`: in memory by default; the
command line keeps them in a file so its commands share one session.

`events()` follows a task over the WebSocket (`GET /api/v1/ws`) until it ends,
resuming after the last `seq` seen when the connection drops, so a reader gets
every event once, in order.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import httpx
import websockets
from pydantic import BaseModel, ConfigDict

from devteam.domain.enums import AgentType, Phase, TaskStatus
from devteam.domain.events import TERMINAL_EVENTS, Event
from devteam.domain.projects import ProjectView as Project
from devteam.domain.tasks import Budget, TaskError, TaskRequest, TaskResult, TaskSummary, Usage

__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "ClientError",
    "Event",
    "MemoryTokenStore",
    "PlanResult",
    "Project",
    "SessionEnded",
    "SubtaskOutcome",
    "Task",
    "TaskPage",
    "TaskRequest",
    "TaskResult",
    "TokenStore",
    "Tokens",
    "Unreachable",
]

REFRESH_MARGIN_S = 30.0
"""Renew an access token this long before it expires."""
WS_UNAUTHORIZED = 4401
"""The WebSocket close code for a bad or expired token."""


# -- errors -----------------------------------------------------------------------------


class ClientError(Exception):
    """Something went wrong talking to the service; `message` is one readable line."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ApiError(ClientError):
    """The service refused: its error object (`code`, `message`) and the HTTP status."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(f"{message} ({status} {code})", code)
        self.status = status
        self.detail = message
        self.request_id = request_id

    @classmethod
    def of(cls, response: httpx.Response) -> ApiError:
        try:
            error = response.json()["error"]
            return cls(
                response.status_code, error["code"], error["message"], error.get("request_id")
            )
        except (ValueError, KeyError, TypeError):
            return cls(
                response.status_code, "http_error", f"the service answered {response.status_code}"
            )


class SessionEnded(ClientError):
    """No usable tokens: never logged in, or the refresh token was refused."""


class Unreachable(ClientError):
    """The service could not be reached."""


# -- models -----------------------------------------------------------------------------


class SubtaskOutcome(BaseModel):
    """One subtask's outcome inside its parent's result."""

    model_config = ConfigDict(frozen=True, extra="allow")

    id: UUID
    agent_type: AgentType | None = None
    status: TaskStatus
    result: dict[str, Any] | None = None
    """The subtask's own result (`output` is its typed output as JSON)."""
    error: TaskError | None = None


class PlanResult(BaseModel):
    """The result of a planned task: its subtasks' outcomes by plan key, and, when they
    changed code, whether the changes are verified, the last review and the delivery."""

    model_config = ConfigDict(frozen=True, extra="allow")

    subtasks: dict[str, SubtaskOutcome]
    verified: bool | None = None
    """Every latest change passes its checks (or fails only as on its base commit)."""
    review: dict[str, Any] | None = None
    """The last review's `verdict` and `round`."""
    delivery: dict[str, Any] | None = None
    """Pushed branches and pull requests, when the project delivers."""


class Task(BaseModel):
    """A task as the API returns it (`GET /api/v1/tasks/{id}`), with its typed result."""

    model_config = ConfigDict(frozen=True, extra="allow")

    id: UUID
    parent_id: UUID | None
    root_id: UUID
    key: str | None = None
    status: TaskStatus
    agent_type: AgentType | None
    task_type: str
    task: str
    complexity: int
    priority: int
    project_id: str | None
    metadata: dict[str, Any]
    phase: Phase | None
    depends_on: list[UUID]
    require_approval: bool = False
    budget: Budget | None = None
    attempt: int
    created_by: UUID
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: TaskResult | PlanResult | None
    """An agent's result once completed (`output` is its typed output as JSON), or, for a
    planned task, its subtasks' outcomes (`PlanResult`)."""
    error: TaskError | None
    usage: Usage
    subtasks: list[TaskSummary] = []

    @property
    def finished(self) -> bool:
        return self.status in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


class TaskPage(BaseModel):
    model_config = ConfigDict(frozen=True)

    items: list[Task]
    next_cursor: str | None


# -- tokens -----------------------------------------------------------------------------


@dataclass
class Tokens:
    access_token: str
    refresh_token: str | None
    expires_at: float
    """Unix time the access token expires."""
    sso: bool = False
    """The identity provider's tokens (single sign-on): renewed through the service's
    `POST /api/v1/auth/oidc/refresh` instead of `POST /api/v1/auth/refresh`."""

    @classmethod
    def of(cls, answer: dict[str, Any]) -> Tokens:
        return cls(
            access_token=answer["access_token"],
            refresh_token=answer.get("refresh_token"),
            expires_at=time.time() + float(answer.get("expires_in", 3600)),
        )

    @property
    def due(self) -> bool:
        return self.expires_at - REFRESH_MARGIN_S <= time.time()


class TokenStore(Protocol):
    """Where a client keeps its tokens; `lock` serializes renewals between its users."""

    def load(self) -> Tokens | None: ...

    def save(self, tokens: Tokens | None) -> None: ...

    def lock(self) -> AbstractContextManager[None]: ...


class MemoryTokenStore:
    """Tokens held by one client object."""

    def __init__(self, tokens: Tokens | None = None) -> None:
        self.tokens = tokens

    def load(self) -> Tokens | None:
        return self.tokens

    def save(self, tokens: Tokens | None) -> None:
        self.tokens = tokens

    def lock(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()


def websocket_url(base: str) -> str:
    parts = urlsplit(base)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/api/v1/ws", "", ""))


# -- the async client -------------------------------------------------------------------


class AsyncClient:
    """The DevTeam API over HTTP and WebSocket, as one user.

    `token` uses a fixed access token (e.g. from single sign-on); otherwise call
    `login()`, or pass a `store` that already holds tokens.
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        *,
        token: str | None = None,
        store: TokenStore | None = None,
        timeout: float = 30.0,
        reconnect_for_s: float = 120.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.store: TokenStore = store or MemoryTokenStore(
            Tokens(token, None, float("inf")) if token else None
        )
        self.reconnect_for_s = reconnect_for_s
        """`events()` gives up after this long without reaching the service."""
        self.http = httpx.AsyncClient(base_url=self.url, timeout=timeout, transport=transport)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.aclose()

    # -- session ------------------------------------------------------------------------

    async def login(self, username: str, password: str) -> Tokens:
        """Log in with a password; the tokens go to the store."""
        response = await self._send(
            "POST", "/api/v1/auth/token", data={"username": username, "password": password}
        )
        if response.is_error:
            raise ApiError.of(response)
        tokens = Tokens.of(response.json())
        with self.store.lock():
            self.store.save(tokens)
        return tokens

    async def logout(self) -> None:
        """End the session on the service (its refresh tokens die) and forget the tokens."""
        with contextlib.suppress(ClientError):
            await self.request("POST", "/api/v1/auth/logout")
        with self.store.lock():
            self.store.save(None)

    async def me(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self.request("GET", "/api/v1/users/me")
        return answer

    async def access_token(self) -> str:
        tokens = self.store.load()
        if tokens is None:
            raise SessionEnded("not logged in")
        if not tokens.due or tokens.refresh_token is None:
            return tokens.access_token
        return (await self.refresh(tokens.refresh_token)).access_token

    async def refresh(self, seen: str | None = None) -> Tokens:
        """New tokens from the refresh token, unless someone sharing the store already
        renewed the `seen` one (presenting a used refresh token would end the session)."""
        with self.store.lock():
            tokens = self.store.load()
            if tokens is None or tokens.refresh_token is None:
                raise SessionEnded("not logged in" if tokens is None else "the token has expired")
            if seen is not None and tokens.refresh_token != seen and not tokens.due:
                return tokens
            path = "/api/v1/auth/oidc/refresh" if tokens.sso else "/api/v1/auth/refresh"
            response = await self._send("POST", path, json={"refresh_token": tokens.refresh_token})
            if response.status_code in (401, 403):
                raise SessionEnded("the session has ended", ApiError.of(response).code)
            if response.is_error:
                raise ApiError.of(response)
            renewed = Tokens.of(response.json())
            renewed.sso = tokens.sso
            # A provider may keep its refresh token instead of rotating it.
            renewed.refresh_token = renewed.refresh_token or tokens.refresh_token
            self.store.save(renewed)
            return renewed

    # -- tasks --------------------------------------------------------------------------

    async def submit(
        self, request: TaskRequest | dict[str, Any], *, idempotency_key: str | None = None
    ) -> Task:
        """Submit a task (`POST /api/v1/tasks`)."""
        body = (
            request.model_dump(mode="json", exclude_defaults=True)
            if isinstance(request, TaskRequest)
            else request
        )
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return Task.model_validate(
            await self.request("POST", "/api/v1/tasks", json=body, headers=headers)
        )

    async def get(self, task_id: UUID | str) -> Task:
        return Task.model_validate(await self.request("GET", f"/api/v1/tasks/{task_id}"))

    async def list(
        self,
        *,
        status: TaskStatus | str | None = None,
        project_id: str | None = None,
        agent_type: AgentType | str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> TaskPage:
        """One page of root tasks, newest first; pass `next_cursor` on for the next."""
        filters = {
            "status": status,
            "project_id": project_id,
            "agent_type": agent_type,
            "limit": limit,
            "cursor": cursor,
        }
        params = {k: str(v) for k, v in filters.items() if v is not None}
        return TaskPage.model_validate(await self.request("GET", "/api/v1/tasks", params=params))

    async def cancel(self, task_id: UUID | str) -> Task:
        return Task.model_validate(await self.request("POST", f"/api/v1/tasks/{task_id}/cancel"))

    async def approve(
        self, task_id: UUID | str, approved: bool = True, comment: str | None = None
    ) -> Task:
        body: dict[str, Any] = {"approved": approved}
        if comment:
            body["comment"] = comment
        return Task.model_validate(
            await self.request("POST", f"/api/v1/tasks/{task_id}/approve", json=body)
        )

    # -- projects -----------------------------------------------------------------------

    async def add_project(
        self, name: str, git_url: str, default_branch: str | None = None
    ) -> Project:
        """Add a project: the service clones it in the background (state `cloning`)."""
        body: dict[str, Any] = {"name": name, "git_url": git_url}
        if default_branch:
            body["default_branch"] = default_branch
        return Project.model_validate(await self.request("POST", "/api/v1/projects", json=body))

    async def projects(self) -> builtins.list[Project]:
        answer = await self.request("GET", "/api/v1/projects")
        return [Project.model_validate(item) for item in answer["items"]]

    async def project(self, name: str) -> Project:
        return Project.model_validate(await self.request("GET", f"/api/v1/projects/{name}"))

    async def refresh_project(self, name: str) -> Project:
        return Project.model_validate(
            await self.request("POST", f"/api/v1/projects/{name}/refresh")
        )

    async def remove_project(self, name: str) -> None:
        await self.request("DELETE", f"/api/v1/projects/{name}")

    async def wait(self, task_id: UUID | str, after: int = 0) -> Task:
        """Follow the task's events until it ends; the task as it ended."""
        async for _ in self.events(task_id, after=after):
            pass
        return await self.get(task_id)

    async def events(
        self,
        task_id: UUID | str,
        after: int = 0,
        *,
        on_reconnect: Callable[[str], None] | None = None,
    ) -> AsyncGenerator[Event, None]:
        """Every event of the task with `seq > after`, then live ones, until it ends.

        A dropped connection is resumed after the last `seq` yielded (no gap, no
        duplicate); an expired token is renewed. `on_reconnect` hears why each
        reconnection happened. Gives up with `Unreachable` after `reconnect_for_s`
        without a working connection.
        """
        stream = _EventStream(self, str(task_id), after, on_reconnect or (lambda _: None))
        async for event in stream:
            yield event

    # -- plumbing -----------------------------------------------------------------------

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the API as the logged-in user; the JSON answer, or `ApiError`."""
        headers = kwargs.pop("headers", {})
        token = await self.access_token()
        response = await self._send(method, path, token=token, headers=headers, **kwargs)
        tokens = self.store.load()
        if response.status_code == 401 and tokens is not None and tokens.refresh_token:
            # Expired, or ended early (a restart without a fixed secret): renew once.
            renewed = await self.refresh(tokens.refresh_token)
            response = await self._send(
                method, path, token=renewed.access_token, headers=headers, **kwargs
            )
        if response.is_error:
            raise ApiError.of(response)
        return response.json() if response.content else None

    async def _send(
        self, method: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            return await self.http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach {self.url}: {exc}") from None


class _EventStream:
    """One task's events over the WebSocket, across as many connections as it takes."""

    def __init__(
        self, client: AsyncClient, task_id: str, after: int, note: Callable[[str], None]
    ) -> None:
        self.client = client
        self.task_id = task_id
        self.last_seq = after
        self.note = note

    async def __aiter__(self) -> AsyncIterator[Event]:
        delay = 0.2
        failing_since: float | None = None
        while True:
            subscribed = False
            try:
                async for event in self._connection():
                    if event is None:
                        subscribed = True
                        continue
                    yield event
                    if self._ends(event):
                        return
                self.note(f"connection closed; resuming after #{self.last_seq}")
            except websockets.ConnectionClosed as exc:
                if exc.rcvd is not None and exc.rcvd.code == WS_UNAUTHORIZED:
                    tokens = self.client.store.load()
                    await self.client.refresh(tokens.refresh_token if tokens else None)
                    continue
                self.note(f"connection lost; resuming after #{self.last_seq}")
            except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
                self.note(f"cannot connect ({type(exc).__name__}); retrying in {delay:.1f} s")
            if subscribed:
                delay, failing_since = 0.2, None
            else:
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > self.client.reconnect_for_s:
                    raise Unreachable(f"cannot reach {self.client.url}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _ends(self, event: Event) -> bool:
        if event.type not in TERMINAL_EVENTS:
            return False
        return event.subtask_id is None or str(event.subtask_id) == self.task_id

    async def _connection(self) -> AsyncIterator[Event | None]:
        """One connection's new events; None marks the subscription's confirmation."""
        token = await self.client.access_token()
        async with websockets.connect(
            websocket_url(self.client.url),
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=10,
            proxy=None,
        ) as socket:
            await self._subscribe(socket)
            async for raw in socket:
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "subscribed":
                    yield None
                elif kind == "event":
                    event = Event.model_validate(message["event"])
                    if event.seq <= self.last_seq:
                        continue
                    self.last_seq = event.seq
                    yield event
                elif kind == "lagged":
                    self.note(f"fell behind; resuming after #{message['last_seq']}")
                    self.last_seq = int(message["last_seq"])
                    await self._subscribe(socket)
                elif kind == "error":
                    raise ApiError(
                        404 if message.get("code") == "not_found" else 400,
                        message.get("code", "error"),
                        message.get("message", "refused"),
                    )

    async def _subscribe(self, socket: Any) -> None:
        await socket.send(
            json.dumps({"type": "subscribe", "task_id": self.task_id, "after": self.last_seq})
        )


# -- the blocking client ----------------------------------------------------------------


class Client:
    """`AsyncClient` for code without an event loop: the same methods, blocking.

    `events()` is a plain iterator. Do not use it from inside a running event loop
    (use `AsyncClient` there).
    """

    def __init__(self, url: str = "http://127.0.0.1:8000", **options: Any) -> None:
        self._runner = asyncio.Runner()
        self._client: AsyncClient = self._runner.run(_make(url, options))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._runner.run(self._client.close())
        self._runner.close()

    @property
    def url(self) -> str:
        return self._client.url

    def login(self, username: str, password: str) -> Tokens:
        return self._runner.run(self._client.login(username, password))

    def logout(self) -> None:
        self._runner.run(self._client.logout())

    def me(self) -> dict[str, Any]:
        return self._runner.run(self._client.me())

    def submit(
        self, request: TaskRequest | dict[str, Any], *, idempotency_key: str | None = None
    ) -> Task:
        return self._runner.run(self._client.submit(request, idempotency_key=idempotency_key))

    def get(self, task_id: UUID | str) -> Task:
        return self._runner.run(self._client.get(task_id))

    def list(self, **filters: Any) -> TaskPage:
        return self._runner.run(self._client.list(**filters))

    def cancel(self, task_id: UUID | str) -> Task:
        return self._runner.run(self._client.cancel(task_id))

    def approve(
        self, task_id: UUID | str, approved: bool = True, comment: str | None = None
    ) -> Task:
        return self._runner.run(self._client.approve(task_id, approved, comment))

    def wait(self, task_id: UUID | str, after: int = 0) -> Task:
        return self._runner.run(self._client.wait(task_id, after))

    def add_project(self, name: str, git_url: str, default_branch: str | None = None) -> Project:
        return self._runner.run(self._client.add_project(name, git_url, default_branch))

    def projects(self) -> builtins.list[Project]:
        return self._runner.run(self._client.projects())

    def project(self, name: str) -> Project:
        return self._runner.run(self._client.project(name))

    def refresh_project(self, name: str) -> Project:
        return self._runner.run(self._client.refresh_project(name))

    def remove_project(self, name: str) -> None:
        self._runner.run(self._client.remove_project(name))

    def events(
        self,
        task_id: UUID | str,
        after: int = 0,
        *,
        on_reconnect: Callable[[str], None] | None = None,
    ) -> Iterator[Event]:
        stream = self._client.events(task_id, after, on_reconnect=on_reconnect)
        try:
            while True:
                try:
                    yield self._runner.run(_next(stream))
                except StopAsyncIteration:
                    return
        finally:
            self._runner.run(stream.aclose())


async def _next(stream: AsyncGenerator[Event, None]) -> Event:
    return await anext(stream)


async def _make(url: str, options: dict[str, Any]) -> AsyncClient:
    # httpx binds its connection pool to the loop that creates the client.
    return AsyncClient(url, **options)
