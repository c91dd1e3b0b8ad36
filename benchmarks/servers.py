"""Servers in processes of their own, on loopback: `devteam serve` and the floors' apps.

Each server is a single uvicorn process (one worker), started from the repository
root with this interpreter, so the clients and load generators that measure it
never share its event loop or its CPU time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from benchmarks.common import Environment

REPO = Path(__file__).resolve().parent.parent
JWT_SECRET = "benchmark-jwt-secret-" + "0123456789abcdef" * 2
PASSWORD = "benchmark password 0123456789"

GENEROUS_LIMITS = {
    # Windows of a second keep the moving-window lists in Redis short (a list holds
    # at most `amount` entries), like the service's real limits do.
    "reads_per_user": "10000/second",
    "writes_per_user": "10000/second",
    "task_submissions_per_user": "10000/second",
    "login_per_ip": "1000/second",
    "login_failures_per_client": "1000/second",
    "login_failures_per_username": "1000/second",
    "ws_connect_per_user": "10000/second",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Server:
    """A server process on loopback; its output goes to `log`."""

    process: asyncio.subprocess.Process
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """CPU time (user and system) the process has used so far."""
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)

    def tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@contextlib.asynccontextmanager
async def server_process(
    args: Sequence[str],
    *,
    port: int,
    ready_path: str,
    log: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> AsyncIterator[Server]:
    """Start `python <args>`, wait until GET `ready_path` answers 200, stop it at the end."""
    child_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            cwd=REPO,
            env=child_env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
        )
    server = Server(process, port, log)
    try:
        await _wait_ready(server, ready_path, timeout)
        yield server
    finally:
        await _stop(process)


async def _wait_ready(server: Server, path: str, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient(base_url=server.url, timeout=2) as client:
        while True:
            if server.process.returncode is not None:
                raise RuntimeError(
                    f"the server exited with {server.process.returncode}:\n{server.tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(path)).status_code == 200:
                    return
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(
                    f"the server did not become ready in {timeout} s:\n{server.tail()}"
                )
            await asyncio.sleep(0.1)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(process.wait(), 20)
    except TimeoutError:
        process.kill()
        await process.wait()


# -- devteam serve ----------------------------------------------------------------------


def write_config(workdir: Path, **security: Any) -> Path:
    """A copy of the repository's config/ with generous rate limits and cheap hashing.

    `security` updates sections of security.yaml (e.g. `rate_limits={...}`).
    """
    target = workdir / f"config-{uuid.uuid4().hex[:8]}"
    target.mkdir()
    for source in (REPO / "config").glob("*.yaml"):
        (target / source.name).write_text(source.read_text())
    path = target / "security.yaml"
    data = yaml.safe_load(path.read_text()) or {}
    data["rate_limits"] = {**data.get("rate_limits", {}), **GENEROUS_LIMITS}
    # Logging in is not what is measured: the cheapest argon2 the config allows.
    data["passwords"] = {"time_cost": 1, "memory_cost_kib": 8, "parallelism": 1}
    data["tokens"] = {**data.get("tokens", {}), "access_ttl_s": 4 * 3600}
    for section, values in security.items():
        data[section] = {**data.get(section, {}), **values}
    path.write_text(yaml.safe_dump(data))
    return target


def service_env(env: Environment, config_dir: Path, **extra: str) -> dict[str, str]:
    """The `DEVTEAM_*` variables of a `devteam serve` on the benchmark's database and broker.

    Production settings (JSON logs at INFO, as deployed), with output to a file.
    """
    values = {
        "DEVTEAM_ENV": "production",
        "DEVTEAM_JWT_SECRET": JWT_SECRET,
        "DEVTEAM_DATABASE_URL": env.database_url,
        "DEVTEAM_REDIS_PREFIX": env.redis_prefix,
        "DEVTEAM_CONFIG_DIR": str(config_dir),
        "DEVTEAM_PROMPTS_DIR": str(REPO / "system_prompts"),
        "DEVTEAM_WORKSPACES_ROOT": str(config_dir / "workspaces"),
        "DEVTEAM_MIGRATE_ON_START": "false",
        "DEVTEAM_LOG_LEVEL": "INFO",
        "DEVTEAM_LLM_MODEL": "",
    }
    if env.redis_url:
        values["DEVTEAM_REDIS_URL"] = env.redis_url
    return {**values, **extra}


def floor_server(app: str, port: int) -> list[str]:
    """`python -m uvicorn` serving `benchmarks.floor_servers:<app>` on loopback."""
    return [
        *["-m", "uvicorn", f"benchmarks.floor_servers:{app}"],
        *["--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
        *["--log-level", "warning"],
    ]


def devteam_serve(port: int, *options: str) -> list[str]:
    return ["-m", "devteam", "serve", "--host", "127.0.0.1", "--port", str(port), *options]


async def create_user(env: Environment, username: str, config_dir: Path) -> None:
    """A developer made directly in the database, as `devteam users create` does."""
    from devteam.domain.enums import Role
    from devteam.security.accounts import Accounts
    from devteam.security.audit import Auditor
    from devteam.security.passwords import Passwords
    from devteam.settings import load_config
    from devteam.storage import Database, Store

    config = load_config(config_dir)
    store = Store(Database(env.database_url))
    try:
        accounts = Accounts(store, Passwords(config.security.passwords))
        await accounts.create(
            username, PASSWORD, Role.DEVELOPER, auditor=Auditor(store), actor="benchmark"
        )
    finally:
        await store.close()


async def login(base_url: str, username: str) -> str:
    """An access token, from `POST /api/v1/auth/token`."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        response = await client.post(
            "/api/v1/auth/token", data={"username": username, "password": PASSWORD}
        )
    if response.status_code != 200:
        raise RuntimeError(f"login failed: {response.status_code} {response.text}")
    token: str = response.json()["access_token"]
    return token
