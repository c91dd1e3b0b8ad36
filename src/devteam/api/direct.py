"""Routes whose usual requests skip FastAPI's generic parameter solving.

FastAPI resolves a route's parameters (dependencies, headers, the body) through a
generic solver that costs more than what most of them do. For the busiest route,
`POST /api/v1/tasks`, a *resolver* written for that route finds the same arguments
by hand on the usual path; the endpoint itself, its response model, its status code
and its OpenAPI description stay FastAPI's.

```python
async def submission(route: APIRoute, request: Request, response: Response) -> Arguments:
    ...  # None: not a usual request, FastAPI solves it (and answers its errors)

@direct_post(router, "", resolve=submission, status_code=202, response_model=TaskOut)
async def submit_task(body: TaskRequest, ...) -> TaskOut: ...
```

A resolver returns None, before doing anything that has an effect (counting a rate
limit, say), for any request that is not plainly valid: FastAPI then handles that
request from the start, so every error answer stays FastAPI's own. Whatever the
resolver raises (an expired token, a refused permission) reaches the app's
exception handlers as a dependency's error would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from fastapi.telemetry import get_telemetry_data

Arguments = dict[str, Any] | None
Resolver = Callable[[APIRoute, Request, Response], Awaitable[Arguments]]
"""Given the route, the request and the response whose headers and status code the
endpoint may set, the endpoint's keyword arguments, or None to let FastAPI solve them."""


def new_sub_response() -> Response:
    """The response a route's `Response` parameter is given, as FastAPI makes it: no
    status code and no headers until the endpoint or a dependency sets them."""
    response = Response()
    response.raw_headers = []  # without its `content-length: 0`
    response.status_code = None  # type: ignore[assignment]
    return response


def direct_route(resolve: Resolver) -> type[APIRoute]:
    """An `APIRoute` class whose handler tries `resolve` before FastAPI's solver."""

    class DirectRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            generic = super().get_route_handler()
            endpoint = self.endpoint
            response_field = self.response_field
            assert response_field is not None, "a direct route declares its response model"

            async def handler(request: Request) -> Response:
                if get_telemetry_data() is not None:
                    # FastAPI records its steps for traces: let it run them.
                    return await generic(request)
                sub_response = new_sub_response()
                arguments = await resolve(self, request, sub_response)
                if arguments is None:
                    return await generic(request)
                result = await endpoint(**arguments)
                response = Response(
                    response_field.serialize_json(result, by_alias=True),
                    status_code=sub_response.status_code or self.status_code or 200,
                    media_type="application/json",
                )
                response.raw_headers.extend(sub_response.raw_headers)
                return response

            return handler

    return DirectRoute


def direct_post(
    router: APIRouter, path: str, *, resolve: Resolver, **options: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`@router.post(path, **options)`, with `resolve` finding the arguments of usual requests."""

    def register(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        router.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            route_class_override=direct_route(resolve),
            **options,
        )
        return endpoint

    return register
