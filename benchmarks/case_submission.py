"""(a) Submission: `POST /api/v1/tasks` under 64 concurrent connections.

`devteam serve --no-executors` on Postgres and Redis (auth, rate limit,
validation, the task, its event and its audit entry in one transaction, the
event published, the work queued), against the floor of this stack: a minimal
FastAPI endpoint inserting a similar row with one raw asyncpg statement. Both
are single uvicorn processes on loopback, loaded in turn by the same wrk (one
thread, 64 connections, closed loop); every request creates a new task. Reports
requests per second and latency percentiles, the ratio to the floor, and the
per-round ratios (rounds alternate which server goes first), and the server's
CPU time per request, which a busy machine changes less than the rates.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import asyncpg

from benchmarks.common import Environment, Result, median
from benchmarks.floor_servers import DSN_VARIABLE
from benchmarks.servers import (
    create_user,
    devteam_serve,
    floor_server,
    free_port,
    login,
    server_process,
    service_env,
    write_config,
)
from benchmarks.wrk import INSTALL_HINT, Load, run_wrk, write_script, wrk_binary

BACKENDS = ("postgres",)
CONNECTIONS = 64
SECONDS = 10.0
WARMUP = 3.0
TARGET_RATIO = 0.5
TARGET_P99_MS = 150.0

BODY = json.dumps(
    {
        "task": "Add a /healthz endpoint to the orders service, with a test",
        "complexity": 3,
        "agent_type": "backend",
        "task_type": "feature",
        "priority": 5,
        "metadata": {"ticket": "OPS-42"},
    }
)


def asyncpg_dsn(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def count_rows(env: Environment, table: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(env.database_url))
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


async def run(env: Environment, workdir: Path, rounds: int, quick: bool) -> list[Result]:
    if wrk_binary() is None:
        print(f"  case a skipped: wrk not found; {INSTALL_HINT}", file=sys.stderr)
        return []
    seconds = SECONDS / 2 if quick else SECONDS
    warmup = WARMUP / 2 if quick else WARMUP
    config_dir = write_config(workdir)
    username = f"bench-{uuid.uuid4().hex[:8]}"
    await create_user(env, username, config_dir)
    service_port, floor_port = free_port(), free_port()
    floor_args = floor_server("submit_app", floor_port)
    loads: dict[str, list[Load]] = {"service": [], "floor": []}
    cpu_ms: dict[str, list[float]] = {"service": [], "floor": []}
    async with (
        server_process(
            devteam_serve(service_port, "--no-executors"),
            port=service_port,
            ready_path="/health/ready",
            log=workdir / "submission-service.log",
            env=service_env(env, config_dir),
        ) as service,
        server_process(
            floor_args,
            port=floor_port,
            ready_path="/health",
            log=workdir / "submission-floor.log",
            env={DSN_VARIABLE: asyncpg_dsn(env.database_url)},
        ) as floor,
    ):
        token = await login(service.url, username)
        targets = {
            "service": (
                f"{service.url}/api/v1/tasks",
                write_script(
                    workdir / "submit-service.lua", BODY, {"Authorization": f"Bearer {token}"}
                ),
            ),
            "floor": (f"{floor.url}/tasks", write_script(workdir / "submit-floor.lua", BODY, {})),
        }
        servers = {"service": service, "floor": floor}
        sent = {"service": 0, "floor": 0}
        for name, (url, script) in targets.items():
            warm = await run_wrk(url, script, connections=CONNECTIONS, seconds=warmup)
            sent[name] += warm.requests
        for round_ in range(rounds):
            order = ["service", "floor"] if round_ % 2 == 0 else ["floor", "service"]
            for name in order:
                url, script = targets[name]
                before = servers[name].cpu_seconds()
                load = await run_wrk(url, script, connections=CONNECTIONS, seconds=seconds)
                cpu = servers[name].cpu_seconds() - before
                loads[name].append(load)
                cpu_ms[name].append(cpu * 1000 / max(1, load.requests))
                sent[name] += load.requests
    created = await count_rows(env, "tasks")
    return results(env, loads, cpu_ms, sent["service"], created)


def results(
    env: Environment,
    loads: dict[str, list[Load]],
    cpu_ms: dict[str, list[float]],
    sent: int,
    created: int,
) -> list[Result]:
    service, floor = loads["service"], loads["floor"]
    rate = median([x.rate for x in service])
    floor_rate = median([x.rate for x in floor])
    p99 = median([x.p99_ms for x in service])
    errors = sum(x.errors for x in service)
    ratios = [s.rate / f.rate for s, f in zip(service, floor, strict=True)]
    checks = f"{errors} errors; {created:,} tasks created for {sent:,} requests counted"
    name = "a. submission"
    return [
        Result(
            name,
            env.backend,
            f"req/s, {CONNECTIONS} connections",
            "1/s",
            rate,
            floor=floor_rate,
            target=f">= {TARGET_RATIO:.2f} x floor",
            met=rate >= TARGET_RATIO * floor_rate and errors == 0,
            rounds=[x.rate for x in service],
            notes=f"ratio per round {', '.join(f'{r:.2f}' for r in ratios)}; {checks}",
        ),
        Result(
            name,
            env.backend,
            "latency p50",
            "ms",
            median([x.p50_ms for x in service]),
            floor=median([x.p50_ms for x in floor]),
            rounds=[x.p50_ms for x in service],
        ),
        Result(
            name,
            env.backend,
            "latency p99",
            "ms",
            p99,
            floor=median([x.p99_ms for x in floor]),
            target=f"< {TARGET_P99_MS:.0f}",
            met=p99 < TARGET_P99_MS,
            rounds=[x.p99_ms for x in service],
        ),
        Result(
            name,
            env.backend,
            "server CPU per request",
            "ms",
            median(cpu_ms["service"]),
            floor=median(cpu_ms["floor"]),
            rounds=cpu_ms["service"],
            notes="user + system time of the server process; holds on a busy machine",
        ),
    ]
