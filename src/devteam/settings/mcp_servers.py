"""`config/mcp_servers.yaml`: the MCP servers agents reach their tools through."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from devteam.settings._base import ConfigModel


class StdioTransport(ConfigModel):
    type: Literal["stdio"] = "stdio"
    command: Annotated[str, Field(min_length=1)]
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None


class StreamableHttpTransport(ConfigModel):
    type: Literal["streamable_http"] = "streamable_http"
    url: Annotated[str, Field(pattern=r"^https?://")]
    headers: dict[str, str] = Field(default_factory=dict)


Transport = Annotated[StdioTransport | StreamableHttpTransport, Field(discriminator="type")]


class McpServerConfig(ConfigModel):
    enabled: bool = True
    description: str = ""
    transport: Transport


class McpServersConfig(ConfigModel):
    servers: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")], McpServerConfig] = (
        Field(default_factory=dict)
    )
