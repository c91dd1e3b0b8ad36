"""The retention purge as a background job of every `serve` and `worker` process.

Each process runs it every `retention.interval_s` (config/security.yaml), the first
time after a random part of the interval (at most a minute), so processes started
together do not purge together. Batches with `SKIP LOCKED` make concurrent runs
harmless, so no process needs to be elected to run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import timedelta

from devteam.observability.logging import get_logger
from devteam.observability.metrics import RETENTION_PURGED, RETENTION_RUNS
from devteam.settings.security import RetentionConfig
from devteam.storage import Store
from devteam.storage.retention import RetentionPolicy, purge
from devteam.storage.types import utcnow

log = get_logger(__name__)


def retention_policy(config: RetentionConfig) -> RetentionPolicy:
    def days(value: float | None) -> timedelta | None:
        return None if value is None else timedelta(days=value)

    return RetentionPolicy(
        finished_tasks=days(config.finished_tasks_days),
        events=days(config.events_days),
        audit=days(config.audit_days),
        batch_size=config.batch_size,
    )


async def purge_now(store: Store, config: RetentionConfig) -> dict[str, int]:
    """One purge run, logged and counted in the retention metrics."""
    try:
        purged = await purge(store, retention_policy(config), utcnow())
    except Exception:
        RETENTION_RUNS.labels("error").inc()
        raise
    RETENTION_RUNS.labels("ok").inc()
    for kind, count in purged.items():
        RETENTION_PURGED.labels(kind).inc(count)
    if any(purged.values()):
        log.info("retention purge", **purged)
    return purged


class RetentionJob:
    def __init__(self, store: Store, config: RetentionConfig) -> None:
        self.store = store
        self.config = config
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        interval = self.config.interval_s
        await asyncio.sleep(random.uniform(0, min(interval, 60.0)))
        while True:
            try:
                await purge_now(self.store, self.config)
            except Exception:
                # The database may be away for a moment; the next run tries again.
                log.exception("retention purge failed")
            await asyncio.sleep(interval)
