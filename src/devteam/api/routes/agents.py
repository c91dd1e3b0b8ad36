"""The agents this service runs: what each does, the tools it may use, its output."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from devteam.api.deps import ServicesDep
from devteam.api.docs import error_responses
from devteam.api.security import require
from devteam.domain.enums import AgentType
from devteam.domain.errors import ErrorCode
from devteam.domain.permissions import Permission

router = APIRouter(prefix="/api/v1/agents", tags=["agents"])


class ToolGrantOut(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    server: str
    """An MCP server of `config/mcp_servers.yaml`."""
    tools: list[str]
    """Tool names the agent may call on it; `["*"]` for every tool the server lists."""
    enabled: bool
    """False while the server is switched off in the configuration."""


class AgentOut(BaseModel):
    model_config = ConfigDict(
        use_attribute_docstrings=True,
        json_schema_extra={
            "examples": [
                {
                    "agent_type": "codebase_analyzer",
                    "description": "Maps a codebase: structure, entry points, dependencies.",
                    "tools": [
                        {
                            "server": "workspace",
                            "tools": ["python_symbols", "read_file", "search_text", "tree"],
                            "enabled": True,
                        }
                    ],
                    "output_schema": {"title": "CodebaseReport", "type": "object"},
                    "in_progress": 1,
                }
            ]
        },
    )

    agent_type: AgentType
    """The agent type, as `agent_type` of a task names it."""
    description: str
    """What the agent does."""
    tools: list[ToolGrantOut]
    """MCP tools granted to this agent type, server by server."""
    output_schema: dict[str, Any] | None
    """JSON Schema of the agent's typed output, when it declares one."""
    in_progress: int
    """Attempts of this agent type running now, in every process."""


def output_schema(agent: Any) -> dict[str, Any] | None:
    model = getattr(agent, "output_model", None) or getattr(agent, "output_type", None)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return model.model_json_schema()
    return None


@router.get(
    "",
    summary="List the agents",
    description="The agents registered in this service, in a fixed order of agent types.",
    response_model=list[AgentOut],
    dependencies=[require(Permission.AGENTS_READ)],
    responses=error_responses(
        ErrorCode.UNAUTHORIZED,
        ErrorCode.TOKEN_EXPIRED,
        (ErrorCode.FORBIDDEN, "this needs the agents:read permission"),
        ErrorCode.RATE_LIMITED,
    ),
)
async def list_agents(services: ServicesDep) -> list[AgentOut]:
    agents = services.team_leader.agents
    async with services.store.read() as tx:
        running = await tx.tasks.running_by_agent_type()
    servers = services.config.mcp_servers.servers
    listed = []
    for agent_type in AgentType:
        agent = agents.get(agent_type)
        if agent is None:
            continue
        grants = [
            ToolGrantOut(
                server=grant.server,
                tools=sorted(grant.tools) if grant.tools is not None else ["*"],
                enabled=servers[grant.server].enabled,
            )
            for grant in services.mcp.registry.grants(agent_type)
        ]
        listed.append(
            AgentOut(
                agent_type=agent_type,
                description=agent.description,
                tools=grants,
                output_schema=output_schema(agent),
                in_progress=running.get(agent_type.value, 0),
            )
        )
    return listed
