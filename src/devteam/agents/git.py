"""Running `git` as a subprocess, cancellably.

A cancelled call kills its process and waits for it, so nothing is left running
behind a cancelled task. `GIT_*` variables of our own environment (a hook may
set `GIT_DIR` or `GIT_INDEX_FILE`) are not passed on: every call names its
repository with `-C`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path


class GitError(RuntimeError):
    def __init__(self, args: tuple[str, ...], returncode: int, stderr: str) -> None:
        self.command = "git " + " ".join(args)
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(f"{self.command} failed ({returncode}): {self.stderr or 'no message'}")


def _environment(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    env.update(extra or {})
    return env


async def git(
    repo: Path,
    *args: str,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> str:
    """`git -C repo args...`; its stdout, or `GitError` when it fails (with `check`)."""
    process = await asyncio.create_subprocess_exec(
        "git",
        "-C",
        str(repo),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_environment(env),
    )
    try:
        stdout, stderr = await process.communicate()
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    if check and process.returncode != 0:
        raise GitError(args, process.returncode or 0, stderr.decode(errors="replace"))
    return stdout.decode(errors="replace")


async def succeeds(repo: Path, *args: str) -> bool:
    """Whether `git -C repo args...` exits 0."""
    process = await asyncio.create_subprocess_exec(
        "git",
        "-C",
        str(repo),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=_environment(None),
    )
    try:
        return await process.wait() == 0
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
