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

_EXAMPLE = [
    {
        "name": "workspace",
        "transport": "stdio",
        "enabled": True,
        "circuit": "closed",
        "healthy": True,
        "tools": ["apply_patch", "python_symbols", "read_file", "search_text", "tree"],
        "last_error": None,
    },
    {
        "name": "perplexity",
        "transport": "stdio",
        "enabled": False,
        "circuit": "open",
        "healthy": False,
        "tools": [],
        "last_error": "ServerUnavailable: the server did not start",
    },
]


@router.get(
    "/servers",
    summary="MCP servers: transport, circuit state, health, tools, last error",
    response_model=list[ServerStatus],
    dependencies=[require(Permission.MCP_READ)],
    responses={
        200: {"content": {"application/json": {"example": _EXAMPLE}}},
        **error_responses(
            ErrorCode.UNAUTHORIZED,
            ErrorCode.FORBIDDEN,
            (ErrorCode.VALIDATION_ERROR, "probe: Input should be a valid boolean"),
            ErrorCode.RATE_LIMITED,
        ),
    },
)
async def list_mcp_servers(
    services: ServicesDep,
    probe: Annotated[
        bool, Query(description="Contact each enabled server now to refresh its health.")
    ] = False,
) -> list[ServerStatus]:
    return await services.mcp.status(probe=probe)
