"""An MCP server that fails on demand, for the resilience tests.

Run: `python fault_server.py --state DIR [--name NAME] [--startup-delay S]` (stdio).

Each call of the `work` tool takes the next action from `DIR/plan.json` (a JSON
list, consumed front first; empty means `ok`) and appends `<pid> <action>` to
`DIR/calls.log` before acting, so a test can count how often the server was
really called, and by which process:

- `ok`: answer `<name>: <text>`
- `error`: answer with a tool error (`isError`)
- `hang`: never answer
- `crash`: exit the process without answering (mid-call)
- `slow:<seconds>`: answer after that long

The plan lives in files, not in the process, so it survives a crash: "crash,
then ok" is a server that dies once and works after a restart.

Other tools: `echo` (answers its text, no plan), `grow` (adds a tool, and says
so with a list-changed notification unless `notify` is false), `pid`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError


def next_action(state: Path) -> str:
    plan_file = state / "plan.json"
    plan = json.loads(plan_file.read_text()) if plan_file.exists() else []
    action = plan.pop(0) if plan else "ok"
    temporary = plan_file.with_suffix(".tmp")
    temporary.write_text(json.dumps(plan))
    temporary.replace(plan_file)
    with (state / "calls.log").open("a") as log:
        log.write(f"{os.getpid()} {action}\n")
    return str(action)


def create_server(state: Path, name: str) -> MCPServer:
    server: MCPServer = MCPServer(f"fault-{name}")

    @server.tool()
    async def work(text: str) -> str:
        """Do some work, or fail as the plan says."""
        action = next_action(state)
        if action == "error":
            raise ToolError(f"{name}: injected tool error")
        if action == "hang":
            await anyio.sleep(3600)
        if action == "crash":
            os._exit(17)
        if action.startswith("slow:"):
            await anyio.sleep(float(action.removeprefix("slow:")))
        return f"{name}: {text}"

    @server.tool()
    def echo(text: str) -> str:
        """Answer the text."""
        return f"{name}: {text}"

    @server.tool()
    def pid() -> int:
        """The server's process id."""
        return os.getpid()

    @server.tool()
    async def grow(tool: str, ctx: Context, notify: bool = True) -> str:
        """Add a tool named `tool`; announce it unless `notify` is false."""

        def added() -> str:
            return "grown"

        server.add_tool(added, name=tool, description="A tool added at run time.")
        if notify:
            # 2026 protocol: subscribers of subscriptions/listen; 2025: the session.
            await ctx.notify_tools_changed()
            await ctx.request_context.session.send_tool_list_changed()
        return f"added {tool}"

    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--name", default="fault")
    parser.add_argument("--startup-delay", type=float, default=0.0, help="Seconds before serving.")
    options = parser.parse_args()
    time.sleep(options.startup_delay)
    create_server(options.state, options.name).run("stdio")


if __name__ == "__main__":
    sys.exit(main())
