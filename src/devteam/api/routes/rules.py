"""The TeamLeader's rules: read them, reload them from team_leader.yaml (operators)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from devteam.api.deps import ServicesDep
from devteam.api.docs import error_responses
from devteam.api.security import AuditorDep, require
from devteam.domain.audit import AuditOutcome
from devteam.domain.errors import ConfigError, ErrorCode, ValidationFailed
from devteam.domain.permissions import Permission
from devteam.orchestration.team_leader import TeamLeader
from devteam.security import AuditAction, Principal

router = APIRouter(prefix="/api/v1/team-leader", tags=["rules"])


class RuleOut(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, populate_by_name=True)

    name: str
    """The rule's class name."""
    description: str
    """What the rule protects (its docstring's first paragraph)."""
    from_: list[str] = Field(alias="from")
    """Statuses it guards transitions from; empty: any."""
    to: list[str]
    """Statuses it guards transitions to; empty: any."""
    kind: Literal["decides", "bookkeeping"] = "decides"
    """`decides`: it may reject, delay or rewrite a transition; `bookkeeping`: it keeps
    records (leases, the queue, usage, events, metrics) and never changes the outcome."""
    on_create: bool = False
    """It also sees a task's creation (the transition from nothing to `pending`)."""


class RulesOut(BaseModel):
    model_config = ConfigDict(
        use_attribute_docstrings=True,
        json_schema_extra={
            "examples": [
                {
                    "policy": [
                        {
                            "name": "WaitForDependencies",
                            "description": "A subtask may start only when every task it "
                            "depends on has completed.",
                            "from": ["delegated"],
                            "to": ["in_progress"],
                            "kind": "decides",
                            "on_create": False,
                        }
                    ],
                    "config": {"complexity": {"budget_per_root": 25, "max_per_task": 5}},
                }
            ]
        },
    )

    policy: list[RuleOut]
    """The rules every status change runs through, in order."""
    config: dict[str, Any]
    """The values in force, as in `config/team_leader.yaml`."""

    @classmethod
    def of(cls, leader: TeamLeader) -> RulesOut:
        return cls.model_validate(leader.describe_rules())


@router.get(
    "/rules",
    summary="Read the rules in force (operator)",
    response_model=RulesOut,
    dependencies=[require(Permission.RULES_READ)],
    responses=error_responses(
        ErrorCode.UNAUTHORIZED,
        ErrorCode.TOKEN_EXPIRED,
        (ErrorCode.FORBIDDEN, "this needs the rules:read permission"),
        ErrorCode.RATE_LIMITED,
    ),
)
async def read_rules(services: ServicesDep) -> RulesOut:
    return RulesOut.of(services.team_leader)


@router.post(
    "/rules/reload",
    summary="Reload the rules from team_leader.yaml (operator)",
    description=(
        "Reads `config/team_leader.yaml` again and tells every process of the service to "
        "do the same (through the broker). An invalid file is refused with `422` and the "
        "reason; the rules in force stay."
    ),
    response_model=RulesOut,
    responses=error_responses(
        ErrorCode.UNAUTHORIZED,
        ErrorCode.TOKEN_EXPIRED,
        (ErrorCode.FORBIDDEN, "this needs the rules:manage permission"),
        (
            ErrorCode.VALIDATION_ERROR,
            "config/team_leader.yaml: concurrency.global: Input should be greater than 0",
        ),
        ErrorCode.RATE_LIMITED,
    ),
)
async def reload_rules(
    caller: Annotated[Principal, require(Permission.RULES_MANAGE)],
    services: ServicesDep,
    auditor: AuditorDep,
) -> RulesOut:
    leader = services.team_leader
    try:
        await leader.reload_rules_everywhere()
    except ConfigError as exc:
        await auditor.record(
            AuditAction.RULES_RELOAD,
            AuditOutcome.FAILURE,
            actor=caller,
            resource_type="rules",
            details={"reason": exc.message},
        )
        raise ValidationFailed(
            exc.message,
            details=[
                {
                    "loc": ["file", "team_leader.yaml"],
                    "field": "team_leader.yaml",
                    "message": exc.message,
                    "type": "config_error",
                }
            ],
        ) from None
    await auditor.record(
        AuditAction.RULES_RELOAD, AuditOutcome.SUCCESS, actor=caller, resource_type="rules"
    )
    return RulesOut.of(leader)
