"""DevTeam's own `workspace` MCP server: the files of one folder, confined to it."""

from devteam.mcp.workspace.server import (
    WorkspaceLimits,
    WorkspaceTools,
    create_workspace_server,
    serve_http,
)

__all__ = ["WorkspaceLimits", "WorkspaceTools", "create_workspace_server", "serve_http"]
