"""An MCP server that writes any file under its root, `.git` included.

Run: `python unguarded_files.py --root DIR` (stdio). Its one tool, `put_file`,
stands in for any tool a coder may get that writes in its worktree without the
workspace server's refusals (a sandbox running the model's commands, say): what
it plants must still never make DevTeam's git run anything.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mcp.server.mcpserver import MCPServer


def create_server(root: Path) -> MCPServer:
    server: MCPServer = MCPServer("unguarded-files")

    @server.tool()
    def put_file(path: str, content: str) -> str:
        """Write `content` to `path` (relative to the root), folders created as needed."""
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        return f"wrote {path}"

    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, required=True)
    options = parser.parse_args()
    create_server(options.root).run("stdio")


if __name__ == "__main__":
    main()
