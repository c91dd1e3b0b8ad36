"""One exception hierarchy for the whole service.

Every error a client can see is a `DevTeamError` with a stable snake_case `code`
and an HTTP status; the API layer turns it into the error shape of docs/api.md. Other
layers raise these, never HTTP exceptions, so the same errors serve the REST API,
the WebSocket hub, the CLI and the workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any, ClassVar


class ErrorCode(StrEnum):
    """Stable error codes: clients match on these, so they never change meaning."""

    VALIDATION_ERROR = "validation_error"
    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    INVALID_CREDENTIALS = "invalid_credentials"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_REUSED = "token_reused"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    RATE_LIMITED = "rate_limited"
    INTERNAL_ERROR = "internal_error"
    SERVICE_UNAVAILABLE = "service_unavailable"
    CONFIG_ERROR = "config_error"
    # Task outcomes, recorded on a failed task's `error.code`.
    BUDGET_EXCEEDED = "budget_exceeded"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    AGENT_ERROR = "agent_error"
    AGENT_STUCK = "agent_stuck"
    AGENT_UNAVAILABLE = "agent_unavailable"
    LLM_NOT_CONFIGURED = "llm_not_configured"
    LLM_ERROR = "llm_error"
    DEPENDENCY_FAILED = "dependency_failed"
    LEASE_EXPIRED = "lease_expired"
    WORKER_STOPPED = "worker_stopped"
    WORKSPACE_TAMPERED = "workspace_tampered"
    CHECKS_FAILED = "checks_failed"
    DELIVERY_FAILED = "delivery_failed"
    # Tool layer.
    CIRCUIT_OPEN = "circuit_open"
    TOOL_ERROR = "tool_error"
    TOOL_UNAVAILABLE = "tool_unavailable"
    # Sandbox and project checks.
    SANDBOX_UNAVAILABLE = "sandbox_unavailable"
    INVALID_PROJECT_CONFIG = "invalid_project_config"


class DevTeamError(Exception):
    """Base of every error the service reports with a code."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR
    status_code: ClassVar[int] = 500

    def __init__(
        self,
        message: str,
        *,
        details: Sequence[dict[str, Any]] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)
        self.headers = headers or {}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ValidationFailed(DevTeamError):
    code = ErrorCode.VALIDATION_ERROR
    status_code = 422


class BadRequest(DevTeamError):
    code = ErrorCode.BAD_REQUEST
    status_code = 400


class Unauthorized(DevTeamError):
    code = ErrorCode.UNAUTHORIZED
    status_code = 401

    def __init__(self, message: str = "authentication required", **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class InvalidCredentials(Unauthorized):
    code = ErrorCode.INVALID_CREDENTIALS

    def __init__(self, message: str = "invalid username or password", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)


class TokenExpired(Unauthorized):
    code = ErrorCode.TOKEN_EXPIRED


class TokenReused(Unauthorized):
    code = ErrorCode.TOKEN_REUSED


class Forbidden(DevTeamError):
    code = ErrorCode.FORBIDDEN
    status_code = 403


class NotFound(DevTeamError):
    code = ErrorCode.NOT_FOUND
    status_code = 404


class MethodNotAllowed(DevTeamError):
    code = ErrorCode.METHOD_NOT_ALLOWED
    status_code = 405


class Conflict(DevTeamError):
    code = ErrorCode.CONFLICT
    status_code = 409


class PayloadTooLarge(DevTeamError):
    code = ErrorCode.PAYLOAD_TOO_LARGE
    status_code = 413


class RateLimited(DevTeamError):
    code = ErrorCode.RATE_LIMITED
    status_code = 429


class ServiceUnavailable(DevTeamError):
    code = ErrorCode.SERVICE_UNAVAILABLE
    status_code = 503


class ConfigError(DevTeamError):
    """A setting or a config file value is wrong; start-up stops with this one line."""

    code = ErrorCode.CONFIG_ERROR
    status_code = 500


class SandboxUnavailable(DevTeamError):
    """Commands cannot run isolated here (bubblewrap missing or unusable), and the
    operator has not chosen to run them without isolation."""

    code = ErrorCode.SANDBOX_UNAVAILABLE
    status_code = 503


class InvalidProjectConfig(DevTeamError):
    """A project's `.devteam.yaml` is malformed; the message names the key and the reason."""

    code = ErrorCode.INVALID_PROJECT_CONFIG
    status_code = 422
