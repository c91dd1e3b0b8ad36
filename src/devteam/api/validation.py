"""Refuse hostile input at the edge, the same way on every storage backend.

Postgres refuses a NUL character in text and JSONB (a 500 deep in a transaction),
SQLite stores it; a lone surrogate (`"\\ud800"` in JSON) cannot be encoded as
UTF-8; `NaN`, `Infinity` and numbers that overflow (`1e400`) are not JSON at all
once stored. None of them is a meaningful request, so `HostileInputMiddleware`
answers `422 validation_error`, naming where it was, for a request that has:

- a NUL character in its path, a query parameter (name or value), a header, or a
  form field; a NUL byte anywhere in a multipart body (the API takes no files);
- in a JSON body: a NUL character or a lone surrogate in any string or object
  key, a number that is not finite, or nesting deeper than `MAX_JSON_DEPTH`.

It runs inside the body-size limit, so it buffers at most `max_body_bytes`. A
body that is not JSON at all is left to FastAPI, which answers `422 json_invalid`.
`loads_strict` gives WebSocket messages the same rules.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devteam.api.errors import error_response
from devteam.domain.errors import ErrorCode

MAX_JSON_DEPTH = 64
"""Objects and arrays nested deeper than this are refused (metadata needs far fewer)."""

_FORBIDDEN_TEXT = re.compile("[\x00\ud800-\udfff]")
# In a JSON text that is UTF-8 and has no NUL byte, a NUL character or a surrogate can
# only be written as an escape (\u0000, \uD800 to \uDFFF), and a number that is not
# finite only as NaN, Infinity, an exponent or hundreds of digits: a body with none
# of these, and fewer brackets than the depth limit, holds nothing hostile.
_MAYBE_HOSTILE_JSON = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])|NaN|Infinity|[0-9][eE]|[0-9]{300}")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class HostileInput(ValueError):
    """Input no backend can store faithfully; `loc` says where, as in validation errors."""

    def __init__(self, loc: list[str], message: str, kind: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message
        self.kind = kind

    def detail(self) -> dict[str, Any]:
        parts = [p for p in self.loc if p not in ("body", "query", "path", "header")]
        field = ".".join(parts)
        return {"loc": self.loc, "field": field, "message": self.message, "type": self.kind}


def shown(text: str, limit: int = 64) -> str:
    """`text` with control characters and surrogates escaped, for an error location."""
    return text[:limit].encode("unicode_escape", "backslashreplace").decode("ascii")


def check_text(text: str, loc: list[str]) -> None:
    """Raise `HostileInput` when `text` holds a NUL character or a lone surrogate."""
    found = _FORBIDDEN_TEXT.search(text)
    if found is None:
        return
    if found.group() == "\x00":
        raise HostileInput(loc, "must not contain the NUL character (U+0000)", "nul_character")
    raise HostileInput(
        loc, "must not contain a lone surrogate (U+D800 to U+DFFF)", "surrogate_character"
    )


def _keep_non_finite(text: str) -> float:
    # NaN, Infinity and -Infinity parse to floats here; the walk refuses them with a location.
    return float(text)


def loads_strict(raw: str | bytes, root: str = "body") -> Any:
    """`json.loads`, refusing (with `HostileInput`) what `check_json` refuses.

    Raises `ValueError` (`json.JSONDecodeError`, `UnicodeDecodeError`) for text that
    is not JSON.
    """
    try:
        value = json.loads(raw, parse_constant=_keep_non_finite)
    except RecursionError:
        raise HostileInput(
            [root], f"nested deeper than {MAX_JSON_DEPTH} levels", "too_deep"
        ) from None
    check_json(value, root)
    return value


def check_json(value: Any, root: str = "body") -> None:
    """Walk a parsed JSON document (iteratively: depth is what it checks)."""
    stack: list[tuple[Any, list[str], int]] = [(value, [root], 0)]
    while stack:
        item, loc, depth = stack.pop()
        if isinstance(item, str):
            check_text(item, loc)
        elif isinstance(item, float):
            if not math.isfinite(item):
                message = "must be a finite number (not NaN, Infinity, or too large)"
                raise HostileInput(loc, message, "finite_number")
        elif isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                # Named by its top-level field: the full location would be as deep.
                raise HostileInput(
                    loc[:2], f"nested deeper than {MAX_JSON_DEPTH} levels", "too_deep"
                )
            if isinstance(item, dict):
                for key, child in item.items():
                    check_text(key, [*loc, shown(key)])
                    stack.append((child, [*loc, key], depth + 1))
            else:
                stack.extend((child, [*loc, str(i)], depth + 1) for i, child in enumerate(item))


def _pairs(encoded: str) -> Iterator[tuple[str, str]]:
    yield from parse_qsl(encoded, keep_blank_values=True, encoding="utf-8", errors="replace")


def check_form(encoded: str, where: str) -> None:
    """Names and values of a query string or an urlencoded form."""
    for name, value in _pairs(encoded):
        check_text(name, [where, shown(name)])
        check_text(value, [where, shown(name)])


def _content_type(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-type":
            return str(value.decode("latin-1")).split(";", 1)[0].strip().lower()
    return None


def _is_json(content_type: str | None) -> bool:
    # FastAPI reads a body without a content type as JSON too.
    return (
        content_type is None
        or content_type == "application/json"
        or (content_type.startswith("application/") and content_type.endswith("+json"))
    )


def check_request_head(scope: Scope) -> None:
    """Path, query string and headers of a request."""
    check_text(scope["path"], ["path"])
    query = scope.get("query_string", b"")
    if query:
        check_form(query.decode("latin-1"), "query")
    for name, value in scope.get("headers", ()):
        if b"\x00" in value:
            check_text(value.decode("latin-1"), ["header", name.decode("latin-1")])


def check_request_body(content_type: str | None, body: bytes) -> None:
    if not body:
        return
    if _is_json(content_type):
        if _plainly_harmless(body):
            return
        try:
            loads_strict(body)
        except HostileInput:
            raise
        except ValueError:
            return  # not JSON: FastAPI answers json_invalid
    elif content_type == "application/x-www-form-urlencoded":
        check_form(body.decode("latin-1"), "body")
    elif content_type == "multipart/form-data" and b"\x00" in body:
        raise HostileInput(["body"], "must not contain the NUL character (U+0000)", "nul_character")


def _plainly_harmless(body: bytes) -> bool:
    """Whether a JSON body cannot hold anything `check_json` refuses, seen without parsing
    it (most bodies); the others are parsed and walked."""
    return (
        body.count(b"{") + body.count(b"[") < MAX_JSON_DEPTH
        and b"\x00" not in body  # UTF-16 and UTF-32 texts have NUL bytes: parsed
        and not body.startswith((b"\xff\xfe", b"\xfe\xff"))
        and _MAYBE_HOSTILE_JSON.search(body) is None
    )


class HostileInputMiddleware:
    """Answer 422 `validation_error` for a request carrying hostile input (module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            check_request_head(scope)
        except HostileInput as exc:
            await self._refuse(exc, scope, receive, send)
            return
        content_type = _content_type(scope)
        if scope["method"] not in _BODY_METHODS or not (
            _is_json(content_type)
            or content_type in ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            await self.app(scope, receive, send)
            return
        try:
            body = await _read_body(receive)
        except HTTPException as exc:  # over the body limit
            code = ErrorCode.PAYLOAD_TOO_LARGE if exc.status_code == 413 else ErrorCode.BAD_REQUEST
            await error_response(exc.status_code, code, str(exc.detail))(scope, receive, send)
            return
        if body is None:
            return  # the client left before sending its body
        try:
            check_request_body(content_type, body)
        except HostileInput as exc:
            await self._refuse(exc, scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    @staticmethod
    async def _refuse(exc: HostileInput, scope: Scope, receive: Receive, send: Send) -> None:
        detail = exc.detail()
        message = f"{detail['field'] or exc.loc[0]}: {exc.message}"
        response = error_response(422, ErrorCode.VALIDATION_ERROR, message, [detail])
        await response(scope, receive, send)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body; None when the client disconnected first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the buffered body over once, then what the client sends."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
