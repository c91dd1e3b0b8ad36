"""What every case shares: backends, timing, statistics, results."""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import asyncpg
import redis

Backend = Literal["sqlite", "postgres"]

POSTGRES_ADMIN_URL = os.environ.get(
    "DEVTEAM_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("DEVTEAM_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class Result:
    """One figure of one case, with the floor it is compared to."""

    case: str
    backend: str
    metric: str
    unit: str
    value: float
    floor: float | None = None
    target: str = ""
    met: bool | None = None
    rounds: list[float] = field(default_factory=list)
    notes: str = ""

    @property
    def ratio(self) -> float | None:
        if self.floor in (None, 0):
            return None
        return self.value / self.floor  # type: ignore[operator]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


@dataclass
class Environment:
    """A database and a broker of the benchmark's own, dropped at the end."""

    backend: Backend
    database_url: str
    redis_url: str | None
    redis_prefix: str


async def _pg(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def environment(backend: Backend, workdir: Path) -> AsyncIterator[Environment]:
    """A fresh, migrated database (and a Redis prefix for Postgres runs)."""
    from devteam.storage import Database
    from devteam.storage.migrate import upgrade

    prefix = f"devteam-bench-{uuid.uuid4().hex[:8]}"
    if backend == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:8]}.db"
        url = f"sqlite+aiosqlite:///{path}"
        redis_url = None
    else:
        name = f"devteam_bench_{uuid.uuid4().hex[:8]}"
        await _pg(f'CREATE DATABASE "{name}"')
        base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
        url = f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)
        redis_url = REDIS_URL
    db = Database(url)
    await upgrade(db)
    await db.close()
    try:
        yield Environment(backend, url, redis_url, prefix)
    finally:
        if backend == "postgres":
            await _pg(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
            client = redis.Redis.from_url(REDIS_URL)
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)


def print_table(results: Sequence[Result]) -> None:
    header = ("case", "backend", "metric", "median", "floor", "ratio", "target", "met")
    rows = [header]
    for r in results:
        rows.append(
            (
                r.case,
                r.backend,
                f"{r.metric} ({r.unit})",
                f"{r.value:,.2f}",
                "" if r.floor is None else f"{r.floor:,.2f}",
                "" if r.ratio is None else f"{r.ratio:.2f}",
                r.target,
                {True: "yes", False: "NO", None: ""}[r.met],
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * width for width in widths))


async def gather_limited(limit: int, jobs: Sequence[Callable[[], Any]]) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Any]) -> Any:
        async with semaphore:
            return await job()

    return await asyncio.gather(*(run(job) for job in jobs))
