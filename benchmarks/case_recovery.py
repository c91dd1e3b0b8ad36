"""(e) Recovery: from kill -9 of a worker to its work running again on another worker.

Two `devteam worker` processes run subtasks whose agent waits; this process
submits and watches. When every subtask is running, one worker is killed with
SIGKILL, and the clock runs until each subtask it held is started again by the
other. The floor is the lease duration: a dead worker's leases must run out
before anyone may take its work over; the target is the lease plus 2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from uuid import UUID

import yaml

from benchmarks.common import Environment, Result, median
from benchmarks.leader import running_leader, submit_roots, wait_finished
from benchmarks.servers import Server, free_port, server_process, service_env, write_config
from devteam.domain.enums import TaskStatus
from devteam.domain.tasks import Task
from devteam.storage import Store

BACKENDS = ("postgres",)
LEASE_S = 5.0
HEARTBEAT_S = 1.0
RECOVERY_INTERVAL_S = 1.0
ROOTS = 10
PER_ROOT = 2
WORKER_CONCURRENCY = ROOTS * PER_ROOT


def recovery_config(workdir: Path) -> Path:
    """The benchmark config with short leases and room for every subtask at once."""
    target = write_config(workdir)
    leader = yaml.safe_load((target / "team_leader.yaml").read_text())
    leader["leases"] = {
        "duration_s": LEASE_S,
        "heartbeat_s": HEARTBEAT_S,
        "recovery_interval_s": RECOVERY_INTERVAL_S,
    }
    leader["concurrency"] = {"global": 100, "per_user": 100, "per_agent_type": {}}
    (target / "team_leader.yaml").write_text(yaml.safe_dump(leader))
    return target


def worker_args(port: int) -> list[str]:
    return [
        *["-m", "devteam", "worker", "--host", "127.0.0.1", "--port", str(port)],
        *["--concurrency", str(WORKER_CONCURRENCY)],
        *["--agents", "benchmarks.agents:waiting_agents"],
    ]


async def subtasks(store: Store, roots: list[Task]) -> list[Task]:
    found: list[Task] = []
    async with store.read() as tx:
        for root in roots:
            found += await tx.tasks.children(root.id)
    return found


async def one_round(env: Environment, workdir: Path, index: int) -> float:
    config = recovery_config(workdir)
    variables = service_env(env, config, DEVTEAM_SHUTDOWN_GRACE_S="1", DEVTEAM_LOG_LEVEL="WARNING")
    async with contextlib.AsyncExitStack() as stack:
        workers: list[Server] = []
        for i in range(2):
            port = free_port()
            log = workdir / f"recovery-{index}-{i}.log"
            workers.append(
                await stack.enter_async_context(
                    server_process(
                        worker_args(port),
                        port=port,
                        ready_path="/health/ready",
                        log=log,
                        env=variables,
                    )
                )
            )
        async with running_leader(env, {}, global_limit=100, start=False) as bench:
            roots = await submit_roots(bench, ROOTS, PER_ROOT)
            total = ROOTS * PER_ROOT
            deadline = time.monotonic() + 60
            while True:  # worker processes publish nothing this process could await
                running = [
                    t
                    for t in await subtasks(bench.store, roots)
                    if t.status == TaskStatus.IN_PROGRESS
                ]
                if len(running) == total:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {len(running)} of {total} subtasks started")
                await asyncio.sleep(0.05)

            # Kill the worker holding the most; the other has room for all of it.
            def held_by(worker: Server) -> dict[UUID, int]:
                marker = f":{worker.pid}/"
                return {t.id: t.attempt for t in running if marker in (t.lease_owner or "")}

            victim = max(workers, key=lambda w: len(held_by(w)))
            held = held_by(victim)
            victim.process.kill()
            killed_at = time.monotonic()
            await victim.process.wait()
            while True:
                now = {t.id: t for t in await subtasks(bench.store, roots)}
                taken_over = [
                    task_id
                    for task_id, attempt in held.items()
                    if now[task_id].status == TaskStatus.IN_PROGRESS
                    and now[task_id].attempt > attempt
                ]
                if len(taken_over) == len(held):
                    elapsed = time.monotonic() - killed_at
                    break
                if time.monotonic() - killed_at > LEASE_S * 6:
                    states = sorted({(now[i].status.value, now[i].attempt) for i in held})
                    survivor = next(w for w in workers if w is not victim)
                    raise RuntimeError(
                        f"{len(held) - len(taken_over)} subtasks not taken over: {states}; "
                        f"the other worker said:\n{survivor.tail()}"
                    )
                await asyncio.sleep(0.02)
            # Leave nothing running for the next round's workers.
            for root in roots:
                await bench.leader.cancel(root.id)
            await wait_finished(bench, [r.id for r in roots], timeout=60)
    return elapsed


async def run(env: Environment, workdir: Path, rounds: int, quick: bool) -> list[Result]:
    times = [await one_round(env, workdir, i) for i in range(rounds)]
    value = median(times)
    target = LEASE_S + 2
    return [
        Result(
            "e. recovery",
            env.backend,
            "kill -9 to running elsewhere",
            "s",
            value,
            floor=LEASE_S,
            target=f"<= {target:.1f} (lease + 2)",
            met=value <= target,
            rounds=times,
            notes=f"lease {LEASE_S:.0f} s, heartbeat {HEARTBEAT_S:.0f} s, "
            f"sweep every {RECOVERY_INTERVAL_S:.0f} s; {ROOTS * PER_ROOT} subtasks on 2 workers",
        )
    ]
