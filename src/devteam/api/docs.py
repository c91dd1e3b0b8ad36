"""OpenAPI documentation of error responses, in the one error shape of docs/api.md.

`error_responses(ErrorCode.NOT_FOUND, (ErrorCode.CONFLICT, "user 'ada' already exists"))`
gives a route's `responses=`: per status, the schema, a description and one example
per error code.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from devteam.domain.errors import ErrorCode


class ErrorBody(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    code: str = Field(examples=["not_found"])
    """Stable snake_case code; clients match on it."""
    message: str
    """For people; may change between versions."""
    details: list[dict[str, Any]]
    """Per-field problems of a `validation_error`; empty otherwise."""
    request_id: str | None
    """Also in the `X-Request-ID` header; quote it when reporting a problem."""


class ErrorOut(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    error: ErrorBody
    """What went wrong."""


_DEFAULTS: dict[ErrorCode, tuple[int, str]] = {
    ErrorCode.BAD_REQUEST: (400, "the request cannot be handled"),
    ErrorCode.UNAUTHORIZED: (401, "authentication required"),
    ErrorCode.INVALID_CREDENTIALS: (401, "invalid username or password"),
    ErrorCode.TOKEN_EXPIRED: (401, "the token has expired"),
    ErrorCode.TOKEN_REUSED: (401, "refresh token already used: the session is revoked"),
    ErrorCode.FORBIDDEN: (403, "this needs the users:manage permission"),
    ErrorCode.NOT_FOUND: (404, "not found"),
    ErrorCode.CONFLICT: (409, "the resource already exists"),
    ErrorCode.PAYLOAD_TOO_LARGE: (413, "the request body is larger than 1048576 bytes"),
    ErrorCode.VALIDATION_ERROR: (422, "limit: Input should be less than or equal to 100"),
    ErrorCode.RATE_LIMITED: (429, "too many requests: at most 100 per minute; retry in 12 s"),
    ErrorCode.SERVICE_UNAVAILABLE: (503, "the service is unavailable"),
}

_RATE_LIMIT_HEADERS = {
    "Retry-After": "Seconds to wait before retrying.",
    "RateLimit-Limit": "Requests allowed in the window.",
    "RateLimit-Remaining": "Requests left in the window.",
    "RateLimit-Reset": "Seconds until the window has room again.",
}

_UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "`Bearer`: send an access token."}


def error_example(code: ErrorCode, message: str | None = None) -> dict[str, Any]:
    details: list[dict[str, Any]] = []
    if code is ErrorCode.VALIDATION_ERROR:
        details = [
            {
                "loc": ["query", "limit"],
                "field": "limit",
                "message": "Input should be less than or equal to 100",
                "type": "less_than_equal",
            }
        ]
    return {
        "error": {
            "code": code.value,
            "message": message or _DEFAULTS[code][1],
            "details": details,
            "request_id": "4f1d2b6c9e0a4b7d8c3e5f6a7b8c9d0e",
        }
    }


def error_responses(*errors: ErrorCode | tuple[ErrorCode, str]) -> dict[int | str, Any]:
    """`responses=` for a route answering these error codes (optionally with a message)."""
    by_status: dict[int, list[tuple[ErrorCode, str]]] = {}
    for error in errors:
        code, message = error if isinstance(error, tuple) else (error, _DEFAULTS[error][1])
        by_status.setdefault(_DEFAULTS[code][0], []).append((code, message))
    responses: dict[int | str, Any] = {}
    for status, entries in sorted(by_status.items()):
        doc: dict[str, Any] = {
            "model": ErrorOut,
            "description": " or ".join(f"`{code.value}`" for code, _ in entries),
            "content": {
                "application/json": {
                    "examples": {
                        code.value: {"summary": message, "value": error_example(code, message)}
                        for code, message in entries
                    }
                }
            },
        }
        if status == 429:
            doc["headers"] = _headers_doc(_RATE_LIMIT_HEADERS)
        if status == 401:
            doc["headers"] = _headers_doc(_UNAUTHORIZED_HEADERS)
        responses[status] = doc
    return responses


def _headers_doc(headers: dict[str, str]) -> dict[str, Any]:
    return {
        name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()
    }
