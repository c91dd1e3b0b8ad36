"""Servers a test starts for itself, to pause or kill them (never the shared ones)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from tests import servers
from tests.processes import free_port


@dataclass
class OwnRedis:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def pause(self) -> None:
        """SIGSTOP: connections stay open and commands get no answer, as in a hung server."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGCONT)
        self.process.kill()
        self.process.wait()


@contextmanager
def own_redis(workdir: Path) -> Iterator[OwnRedis]:
    """A `redis-server` of this test alone, on a free port, without persistence."""
    binary = shutil.which("redis-server")
    if binary is None:
        servers.unavailable("redis-server is not installed")
    assert binary is not None
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = OwnRedis(process, port)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis(port=port, socket_connect_timeout=1) as client:
                    client.ping()
                break
            except redis.ConnectionError:
                assert process.poll() is None, "redis-server exited at start"
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # a server process offers no readiness event to await
        yield server
    finally:
        if process.poll() is None:
            server.kill()
