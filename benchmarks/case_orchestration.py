"""(b) Orchestration: root tasks with 4 subtasks whose agent returns at once.

Submitted to completed: subtasks per second for a burst of roots, and the
orchestration overhead of each subtask (from its becoming ready to its
completion, the agent taking no time, one root at a time). The floor is a
no-op job queue on the same parts: per job one enqueue, one dequeue, one result
written, one acknowledgement.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import aiosqlite
import redis.asyncio as aioredis

from benchmarks.agents import instant_agents
from benchmarks.common import Environment, Result, Timer, median, percentile
from benchmarks.leader import children_of, failed, running_leader, submit_roots, wait_finished
from devteam.domain.tasks import Task

ROOTS = 100
SUBTASKS = 4
FLOOR_JOBS = 400
FLOOR_CONSUMERS = 10
LATENCY_ROOTS = 25


async def one_round(env: Environment, roots: int) -> tuple[float, list[float]]:
    """Throughput of a burst of `roots`, then the overhead of subtasks one root at a time.

    The overhead is each subtask's time from ready (queued) to completed while
    nothing else runs: what orchestration adds to an agent that takes no time.
    Under the burst the same span is mostly waiting in line, which the
    throughput already tells.
    """
    async with running_leader(env, instant_agents(), global_limit=1000) as bench:
        timer = Timer()
        submitted = await submit_roots(bench, roots, SUBTASKS)
        ids = [t.id for t in submitted]
        finished = await wait_finished(bench, ids)
        elapsed = finished - timer.start
        children = await children_of(bench, ids)
        alone: list[Task] = []
        for _ in range(LATENCY_ROOTS):
            (root,) = await submit_roots(bench, 1, SUBTASKS)
            await wait_finished(bench, [root.id])
            alone += await children_of(bench, [root.id])
    if bad := failed(children + alone):
        raise RuntimeError(f"{len(bad)} subtasks did not complete: {bad[0].error}")
    overheads = [
        (c.finished_at - c.queued_at).total_seconds()
        for c in alone
        if c.finished_at and c.queued_at
    ]
    return len(children) / elapsed, overheads


async def floor_redis(redis_url: str, jobs: int) -> float:
    """A no-op job queue on Redis: XADD, XREADGROUP, SET result, XACK."""
    client = aioredis.Redis.from_url(redis_url)
    stream = f"devteam-bench-floor-{uuid.uuid4().hex[:8]}"
    await client.xgroup_create(stream, "g", id="0", mkstream=True)
    done = 0
    finished = asyncio.Event()

    async def consume(name: str) -> None:
        nonlocal done
        while not finished.is_set():
            response = await client.xreadgroup("g", name, {stream: ">"}, count=1, block=100)
            for _, entries in response or []:
                for message_id, _fields in entries:
                    await client.set(f"{stream}:result:{message_id.decode()}", b"ok", ex=60)
                    await client.xack(stream, "g", message_id)
                    done += 1
                    if done == jobs:
                        finished.set()

    try:
        consumers = [asyncio.create_task(consume(f"c{i}")) for i in range(FLOOR_CONSUMERS)]
        start = time.perf_counter()
        for i in range(jobs):
            await client.xadd(stream, {"job": str(i)})
        await finished.wait()
        elapsed = time.perf_counter() - start
        await asyncio.gather(*consumers)
    finally:
        keys = [k async for k in client.scan_iter(match=f"{stream}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    return jobs / elapsed


async def floor_embedded(workdir: Path, jobs: int) -> float:
    """A no-op job queue in process: an asyncio queue and one SQLite write per job."""
    path = workdir / f"floor-{uuid.uuid4().hex[:8]}.db"
    queue: asyncio.Queue[int] = asyncio.Queue()
    done = asyncio.Event()
    count = 0
    async with aiosqlite.connect(path) as db:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("CREATE TABLE results (job INTEGER PRIMARY KEY, value TEXT)")
        await db.commit()

        async def consume() -> None:
            nonlocal count
            while True:
                job = await queue.get()
                await db.execute("INSERT INTO results VALUES (?, 'ok')", (job,))
                await db.commit()
                count += 1
                if count == jobs:
                    done.set()

        consumers = [asyncio.create_task(consume()) for _ in range(FLOOR_CONSUMERS)]
        start = time.perf_counter()
        for i in range(jobs):
            queue.put_nowait(i)
        await done.wait()
        elapsed = time.perf_counter() - start
        for consumer in consumers:
            consumer.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
    path.unlink(missing_ok=True)
    return jobs / elapsed


async def run(env: Environment, workdir: Path, rounds: int, quick: bool) -> list[Result]:
    roots = ROOTS // 4 if quick else ROOTS
    rates: list[float] = []
    p50s: list[float] = []
    p99s: list[float] = []
    floors: list[float] = []
    for _ in range(rounds):
        rate, overheads = await one_round(env, roots)
        rates.append(rate)
        p50s.append(percentile(overheads, 50) * 1000)
        p99s.append(percentile(overheads, 99) * 1000)
        if env.redis_url:
            floors.append(await floor_redis(env.redis_url, FLOOR_JOBS))
        else:
            floors.append(await floor_embedded(workdir, FLOOR_JOBS))
    name = "b. orchestration"
    rate = median(rates)
    p50 = median(p50s)
    wanted = 600 if env.backend == "postgres" else 1000
    return [
        Result(
            name,
            env.backend,
            "subtasks/s",
            "1/s",
            rate,
            floor=median(floors),
            target=f">= {wanted}",
            met=rate >= wanted,
            rounds=rates,
            notes="floor: a no-op job queue on the same parts",
        ),
        Result(
            name,
            env.backend,
            "overhead p50",
            "ms",
            p50,
            target="<= 5",
            met=p50 <= 5,
            rounds=p50s,
        ),
        Result(name, env.backend, "overhead p99", "ms", median(p99s), rounds=p99s),
    ]
