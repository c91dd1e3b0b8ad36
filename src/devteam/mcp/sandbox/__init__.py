"""DevTeam's own `sandbox` MCP server: commands in one worktree, isolated."""

from devteam.mcp.sandbox.server import SandboxTools, create_sandbox_server

__all__ = ["SandboxTools", "create_sandbox_server"]
