"""DevTeam's `sandbox` MCP server: run commands in one worktree, isolated.

One tool, `run_command`: a shell string or an argv list, run in a folder of the
root under bubblewrap (see `devteam.sandbox.runner`), with a timeout and an
output cap no larger than the configured limits. A command that fails, times out
or is killed is a normal result (its exit code says so); a refused request (a
folder outside the root, an empty command) and `sandbox_unavailable` are tool
errors the model can read.

Run it with `devteam mcp sandbox --root PATH` (stdio). Limits and isolation come
from `sandbox:` in config/verification.yaml.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

from devteam import __version__
from devteam.domain.errors import DevTeamError
from devteam.sandbox.runner import NO_ISOLATION_WARNING, CommandResult, Sandbox
from devteam.settings.verification import SandboxConfig

log = logging.getLogger(__name__)

RUNS = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
)

INSTRUCTIONS = (
    "Runs commands in the task's worktree, isolated: the worktree is the only writable "
    "folder, there is no network and none of the service's environment."
)


class SandboxTools:
    """The tool, as a plain method over one sandbox (the server registers it)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    async def run_command(
        self,
        command: Annotated[
            str | list[str],
            Field(
                description="A shell command line (run with /bin/sh -c), or an argv list "
                'run as is, e.g. ["python3", "-m", "pytest", "-q"].'
            ),
        ],
        cwd: Annotated[
            str, Field(description="Folder to run in, relative to the worktree root.")
        ] = ".",
        timeout_s: Annotated[
            float | None,
            Field(
                gt=0,
                description="Seconds before the command and everything it started "
                "is killed; at most the configured limit (the default).",
            ),
        ] = None,
        max_output_bytes: Annotated[
            int | None,
            Field(
                ge=1024,
                description="Output kept (its start and its end); at most the "
                "configured limit (the default).",
            ),
        ] = None,
    ) -> str:
        """Run a command in the worktree and return its exit code and output.

        The worktree is the only writable folder; /tmp and the home folder are
        private and empty; there is no network. Limits apply to time, CPU,
        memory, processes, file size and output. Exit code 124 means the command
        ran past its timeout; 128+N that signal N killed it.
        """
        limits = self.sandbox.limits
        timeout = min(timeout_s or limits.timeout_s, limits.timeout_s)
        sandbox = self.sandbox
        if max_output_bytes is not None and max_output_bytes < limits.output_bytes:
            sandbox = sandbox.with_limits(
                dataclasses.replace(limits, output_bytes=max_output_bytes)
            )
        try:
            result = await sandbox.run(command, cwd=cwd, timeout_s=timeout)
        except DevTeamError as exc:
            raise ToolError(f"{exc.code}: {exc.message}") from exc
        return render(result)


def render(result: CommandResult) -> str:
    """The result as the model reads it: a status line, then the output."""
    status = f"exit code {result.exit_code}"
    if result.timed_out:
        status += " (timed out)"
    lines = [f"$ {result.command}", f"{status} · {result.duration_s:.2f} s"]
    if result.truncated:
        lines.append("[output truncated: its start and its end are shown]")
    if result.warning:
        lines.append(f"[warning: {result.warning}]")
    lines.append(result.output if result.output else "[no output]")
    return "\n".join(lines)


def create_sandbox_server(root: Path | str, config: SandboxConfig | None = None) -> MCPServer:
    """The MCP server over `root` (an existing folder), with the limits of `config`."""
    config = config or SandboxConfig()
    sandbox = Sandbox.from_config(Path(root), config)
    if sandbox.isolation == "none":
        log.warning("sandbox: %s", NO_ISOLATION_WARNING)
    tools = SandboxTools(sandbox)
    server: MCPServer = MCPServer("devteam-sandbox", version=__version__, instructions=INSTRUCTIONS)
    server.add_tool(tools.run_command, annotations=RUNS, structured_output=False)
    return server
