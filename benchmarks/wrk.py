"""HTTP load with wrk (a C load generator): closed loop, N connections, one thread.

A Python load generator would take much of the CPU a 2-core machine has from the
server it measures; wrk takes little and is the same for the service and its floor.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "install it (Debian/Ubuntu: apt-get install wrk; macOS: brew install wrk)"

# The body and headers are set once; done() prints the figures as one JSON line.
SCRIPT = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nWRK_RESULT {{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, '
    .. '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, '
    .. '"p99_us": %d, "max_us": %d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def wrk_binary() -> str | None:
    return shutil.which("wrk")


@dataclass(frozen=True)
class Load:
    """What one wrk run measured."""

    requests: int
    seconds: float
    errors: int
    """Connect, read, write and timeout errors, and answers that were not 2xx/3xx."""
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def write_script(path: Path, body: str, headers: dict[str, str]) -> Path:
    lines = "\n".join(f'wrk.headers["{k}"] = [==[{v}]==]' for k, v in headers.items())
    path.write_text(SCRIPT.format(body=body, headers=lines))
    return path


async def run_wrk(
    url: str, script: Path, *, connections: int, seconds: float, timeout_s: float = 5.0
) -> Load:
    binary = wrk_binary()
    if binary is None:
        raise RuntimeError(f"wrk not found: {INSTALL_HINT}")
    process = await asyncio.create_subprocess_exec(
        binary,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        f"{max(1, round(timeout_s))}s",
        "-s",
        str(script),
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    marker = [line for line in text.splitlines() if line.startswith("WRK_RESULT ")]
    if process.returncode != 0 or not marker:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{text}")
    figures = json.loads(marker[-1].removeprefix("WRK_RESULT "))
    errors = sum(figures[k] for k in ("connect", "read", "write", "status", "timeout"))
    return Load(
        requests=figures["requests"],
        seconds=figures["duration_us"] / 1e6,
        errors=errors,
        p50_ms=figures["p50_us"] / 1000,
        p90_ms=figures["p90_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        max_ms=figures["max_us"] / 1000,
    )
