"""Fixtures for the sandbox: a worktree beside a folder of secrets, real bubblewrap."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import unavailable


def require_bwrap() -> None:
    """Skip (locally) or fail (in CI) where bubblewrap is not installed."""
    if shutil.which("bwrap") is None:
        unavailable("bubblewrap (bwrap) is not installed")
    if shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") is None:
        unavailable("the tests run python3 inside the sandbox: install python3")


@dataclass(frozen=True)
class Folders:
    root: Path
    """The worktree: the only writable folder in the sandbox."""
    data: Path
    """Stands for the service's data folder and the other worktrees: never visible."""
    secret: Path


@pytest.fixture
def folders(tmp_path: Path) -> Folders:
    root, data = tmp_path / "worktree", tmp_path / "service-data"
    (root / "src").mkdir(parents=True)
    (root / "src" / "main.py").write_text("print('hello from the project')\n")
    data.mkdir()
    secret = data / "secrets.env"
    secret.write_text("DEVTEAM_JWT_SECRET=do-not-leak\n")
    secret.chmod(0o600)
    return Folders(root, data, secret)


def processes_with(marker: str) -> list[int]:
    """Host pids of the processes whose command line contains `marker`."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(int(entry.name))
    return found
