"""Commands run isolated in a project's worktree, and the project's declared checks."""

from devteam.domain.errors import InvalidProjectConfig, SandboxUnavailable
from devteam.sandbox.project import (
    PROJECT_FILE,
    DeliveryConfig,
    ProjectChecks,
    load_project_checks,
)
from devteam.sandbox.runner import (
    NO_ISOLATION_WARNING,
    TIMEOUT_EXIT_CODE,
    CommandResult,
    Sandbox,
    SandboxLimits,
)

__all__ = [
    "NO_ISOLATION_WARNING",
    "PROJECT_FILE",
    "TIMEOUT_EXIT_CODE",
    "CommandResult",
    "DeliveryConfig",
    "InvalidProjectConfig",
    "ProjectChecks",
    "Sandbox",
    "SandboxLimits",
    "SandboxUnavailable",
    "load_project_checks",
]
