"""`devteam serve` and `devteam worker` as real processes, for multi-process tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without DEVTEAM_ variables, the repository's config, and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVTEAM_")}
    env["DEVTEAM_CONFIG_DIR"] = str(REPO / "config")
    env["PYTHONUNBUFFERED"] = "1"  # its log is readable while it runs
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env.update(extra)
    return env


def devteam(*args: str) -> list[str]:
    return [sys.executable, "-m", "devteam", *args]


class Process:
    """One `devteam serve|worker` process; its output goes to `log`."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], log: Path, cwd: Path = REPO
    ) -> None:
        self.name = name
        self.port = free_port()
        self.log = log
        self.output = log.open("wb")
        self.handle = subprocess.Popen(
            devteam(*args, "--port", str(self.port)),
            cwd=cwd,
            env=env,
            stdout=self.output,
            stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def target(self) -> str:
        """host:port, as Prometheus names a scrape target."""
        return f"127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.handle.poll() is None, f"{self.name} exited:\n{self.log.read_text()}"
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)  # a subprocess offers no readiness event to await
        raise AssertionError(f"{self.name} did not start:\n{self.log.read_text()}")

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, then wait for the exit code (SIGKILL after `timeout`)."""
        if self.handle.poll() is None:
            self.handle.send_signal(signal.SIGTERM)
        try:
            return self.handle.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.handle.kill()
            self.handle.wait()
            raise AssertionError(f"{self.name} ignored SIGTERM:\n{self.log.read_text()}") from None

    def kill(self) -> None:
        """SIGKILL: the process dies at once, with nothing handed back."""
        self.handle.kill()
        self.handle.wait()

    def close(self) -> None:
        if self.handle.poll() is None:
            self.handle.kill()
            self.handle.wait()
        self.output.close()

    def stop(self) -> None:
        """SIGTERM (SIGKILL if ignored), then release the log."""
        try:
            if self.handle.poll() is None:
                self.terminate()
        finally:
            self.close()
