"""Enumerations shared by every layer: statuses, agent types, phases, roles."""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    PENDING = "pending"
    PLANNING = "planning"
    AWAITING_APPROVAL = "awaiting_approval"
    DELEGATED = "delegated"
    IN_PROGRESS = "in_progress"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})


class AgentType(StrEnum):
    RESEARCH = "research"
    CODEBASE_ANALYZER = "codebase_analyzer"
    FRONTEND = "frontend"
    BACKEND = "backend"
    REVIEWER = "reviewer"
    DELIVERY = "delivery"


CODER_TYPES = frozenset({AgentType.FRONTEND, AgentType.BACKEND})
"""Agent types whose output is a `CodeChange` on a git branch."""


class Phase(StrEnum):
    """Phases run in this order; a later phase starts when the earlier ones are done."""

    RESEARCH = "research"
    ANALYSIS = "analysis"
    IMPLEMENTATION = "implementation"
    REVIEW = "review"
    DELIVERY = "delivery"

    @property
    def order(self) -> int:
        return list(Phase).index(self)


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    DEVELOPER = "developer"
    VIEWER = "viewer"
