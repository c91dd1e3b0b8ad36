"""The MCP servers agents reach their tools through, for operators."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from devteam.api.deps import ServicesDep
from devteam.api.docs import error_responses
from devteam.api.security import require
from devteam.domain.errors import ErrorCode
from devteam.domain.permissions import Permission
from devteam.mcp.manager import ServerStatus

router = APIRouter(prefix="/api/v1/mcp", tags=["mcp"])


@router.get(
    "/servers",
    summary="MCP servers: transport, circuit state, health, tools, last error",
    response_model=list[ServerStatus],
    dependencies=[require(Permission.MCP_READ)],
    responses=error_responses(ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.RATE_LIMITED),
)
async def list_mcp_servers(
    services: ServicesDep,
    probe: Annotated[
        bool, Query(description="Contact each enabled server now to refresh its health.")
    ] = False,
) -> list[ServerStatus]:
    return await services.mcp.status(probe=probe)
