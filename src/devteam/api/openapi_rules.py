"""What every operation can answer, and the configured password rules, in the OpenAPI document.

Routes document their own answers (`api.docs.error_responses`); this adds what
comes from the edge rather than from a route, so a new route is covered too:

- `400 bad_request` on every operation with a request body: a body FastAPI
  cannot decode (JSON that is not UTF-8, a broken multipart form);
- `422 validation_error` on every operation: hostile input (`api.validation`)
  is refused wherever it is, the path and headers included;
- the password rules of `config/security.yaml` on the user-create body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from devteam.api.docs import error_example
from devteam.domain.errors import ErrorCode
from devteam.settings.security import PasswordsConfig

_ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorOut"}
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _error_doc(
    code: ErrorCode, description: str, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    example = error_example(code, message)
    example["error"]["details"] = details or []
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": _ERROR_SCHEMA,
                "examples": {code.value: {"summary": message, "value": example}},
            }
        },
    }


BAD_BODY = _error_doc(
    ErrorCode.BAD_REQUEST,
    "`bad_request`: the body cannot be decoded (e.g. JSON that is not UTF-8)",
    "There was an error parsing the body",
)
HOSTILE_INPUT = _error_doc(
    ErrorCode.VALIDATION_ERROR,
    "`validation_error`: e.g. a NUL character in the path, a parameter or a header",
    "x-request-id: must not contain the NUL character (U+0000)",
    [
        {
            "loc": ["header", "x-request-id"],
            "field": "x-request-id",
            "message": "must not contain the NUL character (U+0000)",
            "type": "nul_character",
        }
    ],
)


def document_edge_answers(spec: dict[str, Any]) -> None:
    """Add the 400 and 422 answers (module docstring) where an operation lacks them."""
    for operations in spec.get("paths", {}).values():
        for method in _METHODS:
            operation = operations.get(method)
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            if "requestBody" in operation:
                responses.setdefault("400", BAD_BODY)
            responses.setdefault("422", HOSTILE_INPUT)
            operation["responses"] = dict(sorted(responses.items()))


def document_password_rules(spec: dict[str, Any], passwords: PasswordsConfig) -> None:
    schemas = spec.get("components", {}).get("schemas", {})
    password = schemas.get("UserCreate", {}).get("properties", {}).get("password")
    if password is not None:
        password["minLength"] = passwords.min_length
        password["maxLength"] = passwords.max_length
        password["description"] = (
            f"{passwords.min_length} to {passwords.max_length} characters "
            "(`passwords` in config/security.yaml)."
        )


def install_openapi_rules(app: FastAPI, passwords: PasswordsConfig) -> None:
    """Make `app.openapi()` document the edge's answers and the password rules."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()  # cached by FastAPI in app.openapi_schema
            document_edge_answers(spec)
            document_password_rules(spec, passwords)
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]
