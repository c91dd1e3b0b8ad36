"""(c) Concurrency: 1,000 subtasks whose agent sleeps 1 s, with the global limit at 1,000.

Wall time from the first submission to the last completion, against the floor of
1,000 concurrent 1-second sleeps in one process; and the process's peak RSS.
"""

from __future__ import annotations

import asyncio
import resource
from pathlib import Path

from benchmarks.agents import sleeping_agents
from benchmarks.common import Environment, Result, Timer, median
from benchmarks.leader import children_of, failed, running_leader, submit_roots, wait_finished

SUBTASKS = 1000
PER_ROOT = 50
SLEEP = 1.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def floor() -> float:
    timer = Timer()
    await asyncio.gather(*(asyncio.sleep(SLEEP) for _ in range(SUBTASKS)))
    return timer.elapsed


async def one_round(env: Environment, subtasks: int) -> float:
    async with running_leader(env, sleeping_agents(SLEEP), global_limit=subtasks) as bench:
        timer = Timer()
        roots = await submit_roots(bench, subtasks // PER_ROOT, PER_ROOT)
        ids = [t.id for t in roots]
        finished = await wait_finished(bench, ids)
        children = await children_of(bench, ids)
    if bad := failed(children):
        raise RuntimeError(f"{len(bad)} subtasks did not complete: {bad[0].error}")
    return finished - timer.start


async def run(env: Environment, workdir: Path, rounds: int, quick: bool) -> list[Result]:
    subtasks = SUBTASKS // 4 if quick else SUBTASKS
    walls = [await one_round(env, subtasks) for _ in range(rounds)]
    floors = [await floor() for _ in range(rounds)]
    wall = median(walls)
    rss = peak_rss_mb()
    name = "c. concurrency"
    return [
        Result(
            name,
            env.backend,
            f"wall, {subtasks} x 1 s",
            "s",
            wall,
            floor=median(floors),
            target="<= 1.6",
            met=wall <= 1.6,
            rounds=walls,
        ),
        Result(
            name,
            env.backend,
            "peak RSS",
            "MB",
            rss,
            target="<= 300",
            met=rss <= 300,
            notes="the whole benchmark process so far",
        ),
    ]
