"""mcp-server-git, pinned to the git directory DevTeam made for the task.

`python -m devteam.mcp.pinned_git --repository <worktree>` runs mcp-server-git
unchanged, except that every repository it opens is the one named by `GIT_DIR`
and `GIT_WORK_TREE` (set by `gitsafety.hardened_environment` when the server is
configured with `git_environment: true`). GitPython, which mcp-server-git is
built on, would otherwise follow the worktree's `.git` file to whatever git
directory it names, and hand that directory to every git it runs (as `GIT_DIR`):
a `.git` planted in the worktree would choose the configuration, and with it
the filter and diff drivers git runs. The server still checks each tool's
`repo_path` against `--repository`; it just no longer decides which repository
that is.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any


def pin(git_dir: str) -> None:
    """Make mcp-server-git open `git_dir` whatever path a tool names."""
    import git
    from mcp_server_git import server

    class PinnedRepo(git.Repo):
        def __init__(self, path: Any = None, *args: Any, **kwargs: Any) -> None:
            # `path` was checked against --repository by the server; the repository
            # is DevTeam's, not the one a `.git` under `path` names.
            super().__init__(git_dir, *args, **kwargs)

    pinned = types.ModuleType(git.__name__, git.__doc__)
    pinned.__dict__.update({k: v for k, v in vars(git).items() if not k.startswith("__")})
    pinned.Repo = PinnedRepo  # type: ignore[attr-defined]
    server.git = pinned  # type: ignore[attr-defined]


def main() -> None:
    git_dir, work_tree = os.environ.get("GIT_DIR"), os.environ.get("GIT_WORK_TREE")
    if not git_dir or not work_tree:
        sys.exit("devteam.mcp.pinned_git needs GIT_DIR and GIT_WORK_TREE (git_environment: true)")
    pin(git_dir)
    from mcp_server_git import main as serve

    serve()


if __name__ == "__main__":
    main()
