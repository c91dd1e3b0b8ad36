"""A project's remote for delivery tests: a bare repository served by a real `git daemon`.

    with GitRemote(tmp_path / "remotes", "acme/shop") as remote:
        git(repo, "remote", "add", "origin", remote.url)   # git://127.0.0.1:<port>/acme/shop.git

Pushes go over the git protocol (`--enable=receive-pack`), to a daemon on a free
loopback port, started and stopped by the test.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from tests import servers
from tests.processes import free_port


class GitRemote:
    def __init__(self, base: Path, name: str) -> None:
        self.base = base
        self.name = name
        self.path = base / f"{name}.git"
        self.port = 0
        self._daemon: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"git://127.0.0.1:{self.port}/{self.name}.git"

    def ref(self, branch: str) -> str | None:
        """The commit `branch` points to on the remote, or None when it has no such branch."""
        done = subprocess.run(
            [
                "git",
                "-C",
                str(self.path),
                "rev-parse",
                "--verify",
                "--quiet",
                f"refs/heads/{branch}",
            ],
            capture_output=True,
            text=True,
        )
        return done.stdout.strip() if done.returncode == 0 else None

    def branches(self) -> list[str]:
        done = subprocess.run(
            [
                "git",
                "-C",
                str(self.path),
                "for-each-ref",
                "--format=%(refname:short)",
                "refs/heads",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return sorted(done.stdout.split())

    def __enter__(self) -> GitRemote:
        if shutil.which("git") is None:
            servers.unavailable("git is not installed")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", "--bare", str(self.path)], check=True)
        self.port = free_port()
        self._daemon = subprocess.Popen(
            [
                "git",
                "daemon",
                "--export-all",
                "--enable=receive-pack",
                "--reuseaddr",
                f"--base-path={self.base}",
                f"--port={self.port}",
                "--listen=127.0.0.1",
                str(self.base),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._daemon.poll() is not None:
                error = self._daemon.stderr.read().decode() if self._daemon.stderr else ""
                servers.unavailable(f"git daemon did not start: {error.strip()}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)  # a daemon offers no readiness event to await
        raise AssertionError("git daemon did not listen within 20s")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._daemon is not None:
            self._daemon.terminate()
            try:
                self._daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._daemon.kill()
                self._daemon.wait()
            if self._daemon.stderr is not None:
                self._daemon.stderr.close()
