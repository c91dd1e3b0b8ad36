"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from devteam.api.deps import ServicesDep
from devteam.observability.health import run_checks

router = APIRouter(prefix="/health", tags=["health"])


class Liveness(BaseModel):
    model_config = ConfigDict(
        use_attribute_docstrings=True, json_schema_extra={"examples": [{"status": "ok"}]}
    )

    status: Literal["ok"] = "ok"
    """Always `ok`: the process answers."""


class ReadinessOut(BaseModel):
    model_config = ConfigDict(
        use_attribute_docstrings=True,
        json_schema_extra={
            "examples": [
                {"status": "ok", "checks": {"database": "ok", "broker": "ok"}},
                {
                    "status": "unavailable",
                    "checks": {"database": "ok", "broker": "ConnectionError: refused"},
                },
            ]
        },
    )

    status: Literal["ok", "unavailable"]
    """`ok` when every check passes."""
    checks: dict[str, str]
    """Check name -> `ok` or why it failed."""


@router.get("/live", summary="The process is up", response_model=Liveness)
async def live() -> Liveness:
    return Liveness()


@router.get(
    "/ready",
    summary="The service can serve: database and broker answer",
    response_model=ReadinessOut,
    responses={503: {"model": ReadinessOut, "description": "A dependency is failing"}},
)
async def ready(services: ServicesDep) -> JSONResponse:
    readiness = await run_checks(services.readiness_checks)
    body = ReadinessOut(status="ok" if readiness.ready else "unavailable", checks=readiness.checks)
    return JSONResponse(body.model_dump(), status_code=200 if readiness.ready else 503)
