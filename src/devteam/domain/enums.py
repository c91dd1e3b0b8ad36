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
"""A task in one of these never moves again."""

ACTIVE_STATUSES = frozenset(TaskStatus) - TERMINAL_STATUSES
"""Not finished yet."""

RUNNING_STATUSES = frozenset({TaskStatus.IN_PROGRESS, TaskStatus.CANCELLING})
"""An agent attempt may be running: with a lease, it takes a concurrency slot."""

LEASED_STATUSES = RUNNING_STATUSES | {TaskStatus.PLANNING}
"""Statuses in which a worker holds the task's lease (an attempt, or an LLM planning)."""


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
        return PHASE_ORDER.index(self)


PHASE_ORDER: tuple[Phase, ...] = tuple(Phase)
"""The default order of the phases (`phases` in team_leader.yaml may change it)."""


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    DEVELOPER = "developer"
    VIEWER = "viewer"
