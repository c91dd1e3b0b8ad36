"""Turn every error into the one error shape of docs/api.md.

`{"error": {"code", "message", "details", "request_id"}}` — for our own errors,
validation errors, unknown routes, wrong methods and everything unexpected.
Unexpected exceptions are logged with their traceback and answered with no detail.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from devteam.domain.errors import DevTeamError, ErrorCode
from devteam.observability.logging import context_snapshot

_STATUS_CODES: dict[int, ErrorCode] = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    422: ErrorCode.VALIDATION_ERROR,
    429: ErrorCode.RATE_LIMITED,
    503: ErrorCode.SERVICE_UNAVAILABLE,
}


def error_body(
    code: str, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "details": details or [],
            "request_id": context_snapshot().get("request_id"),
        }
    }


def error_response(
    status_code: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(code, message, details), status_code=status_code, headers=headers
    )


def validation_details(errors: Any) -> list[dict[str, Any]]:
    """Location, message and type of each problem; the input is not echoed back."""
    details = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ())]
        details.append(
            {
                "loc": loc,
                "field": ".".join(p for p in loc if p not in ("body", "query", "path", "header")),
                "message": str(error.get("msg", "")).removeprefix("Value error, "),
                "type": error.get("type", "value_error"),
            }
        )
    return details


async def _devteam_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DevTeamError)
    return error_response(exc.status_code, exc.code, exc.message, exc.details, exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = validation_details(exc.errors())
    first = details[0] if details else None
    message = f"{first['field'] or 'request'}: {first['message']}" if first else "invalid request"
    return error_response(422, ErrorCode.VALIDATION_ERROR, message, details)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, ErrorCode.BAD_REQUEST)
    headers = exc.headers
    if exc.status_code == 404 and exc.detail == "Not Found":
        message = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
        headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, code, message, headers=headers)


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on this path (Starlette names only the first route's)."""
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DevTeamError, _devteam_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
