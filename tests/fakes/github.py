"""A fake GitHub REST API on loopback: pull requests, as `POST /repos/{owner}/{repo}/pulls`.

It speaks GitHub's protocol for the calls delivery makes: the bearer token must be
the one it was given (else `401 Bad credentials`), the head branch must exist on
the remote it stands for (else `422 Validation Failed`), a second pull request
for the same head is refused with `422` as GitHub does, and
`GET /repos/{owner}/{repo}/pulls?head=owner:branch` lists the open ones.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


class FakeGitHub:
    def __init__(self, token: str, branch_exists: Callable[[str], bool]) -> None:
        self.token = token
        self.branch_exists = branch_exists
        self.pulls: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.port = 0
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _refused(self, request: Request) -> JSONResponse | None:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        return None

    async def _pulls(self, request: Request) -> JSONResponse:
        owner, repo = request.path_params["owner"], request.path_params["repo"]
        self.requests.append((request.method, request.url.path, dict(request.headers)))
        if refused := self._refused(request):
            return refused
        if request.method == "GET":
            head = request.query_params.get("head", "")
            found = [
                p
                for p in self.pulls
                if f"{owner}:{p['head']['ref']}" == head and p["state"] == "open"
            ]
            return JSONResponse(found)
        body = await request.json()
        missing = [k for k in ("title", "head", "base") if not body.get(k)]
        if missing:
            return _invalid(f"missing fields: {', '.join(missing)}")
        if not self.branch_exists(body["head"]):
            return _invalid(f"head {body['head']} is not a branch of {owner}/{repo}")
        if any(p["head"]["ref"] == body["head"] for p in self.pulls):
            return _invalid(f"A pull request already exists for {owner}:{body['head']}.")
        number = len(self.pulls) + 1
        pull = {
            "number": number,
            "state": "open",
            "title": body["title"],
            "body": body.get("body", ""),
            "html_url": f"{self.api_url}/{owner}/{repo}/pull/{number}",
            "head": {"ref": body["head"]},
            "base": {"ref": body["base"]},
        }
        self.pulls.append(pull)
        return JSONResponse(pull, status_code=201)

    async def __aenter__(self) -> FakeGitHub:
        route = Route("/repos/{owner}/{repo}/pulls", self._pulls, methods=["GET", "POST"])
        app = Starlette(routes=[route])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_config=None, lifespan="off", access_log=False)
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        self._socket, self._server = sock, server
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None and self._socket is not None:
            self._server.should_exit = True
            await self._server.shutdown(sockets=[self._socket])
            self._socket.close()


def _invalid(message: str) -> JSONResponse:
    return JSONResponse(
        {"message": "Validation Failed", "errors": [{"message": message}]}, status_code=422
    )
