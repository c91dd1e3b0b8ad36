"""Recovery and timeouts: what no running worker is watching over.

The sweeper runs in every process with executors, every
`leases.recovery_interval_s` and once at start-up. It takes over attempts whose
lease expired (their worker died), queues ready work that is not on the queue
(a retry whose back-off ended, or everything after a restart of the in-process
broker), and fails work past its queue-wait, phase or task timeout. Every change
it makes goes through the rules engine like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from devteam.domain.enums import TaskStatus
from devteam.domain.errors import ErrorCode
from devteam.domain.tasks import Task, phase_rank, phase_ranks
from devteam.observability import metrics
from devteam.observability.logging import get_logger
from devteam.orchestration.clock import Clock
from devteam.orchestration.effects import BrokerEffects
from devteam.orchestration.engine import Engine, TransitionResult
from devteam.orchestration.queue import PLAN_QUEUE, PRIORITY_QUEUES
from devteam.orchestration.rules.base import TransitionRequest
from devteam.orchestration.rules.scheduling import queue_wait_exceeded
from devteam.storage import Store

log = get_logger(__name__)

S = TaskStatus


async def end_lost_attempt(engine: Engine, task: Task) -> TransitionResult:
    """The worker of `task` stopped renewing its lease: end the attempt so it runs again."""
    error = {
        "code": ErrorCode.LEASE_EXPIRED.value,
        "message": f"the worker {task.lease_owner} stopped renewing its lease",
    }
    target = {S.PLANNING: S.PENDING, S.CANCELLING: S.CANCELLED}.get(task.status, S.FAILED)
    # The sweepers of every process and a worker given the dead one's message may all
    # find the same expired lease: only the first take-over counts.
    request = TransitionRequest(
        task.id,
        target,
        reason="lease expired",
        updates={"error": error},
        expect_attempt=task.attempt,
        expect_lease_owner=task.lease_owner,
        expect_status=task.status,
    )
    (result,) = await engine.transition_many([request], root_ids=[task.root_id])
    return result


def _timeout(message: str) -> dict[str, Any]:
    return {"error": {"code": ErrorCode.TIMEOUT.value, "message": message}}


class Sweeper:
    def __init__(
        self,
        engine: Engine,
        store: Store,
        effects: BrokerEffects,
        clock: Clock,
    ) -> None:
        self.engine = engine
        self.store = store
        self.effects = effects
        self.clock = clock
        self._stop = asyncio.Event()

    async def run(self) -> None:
        """Sweep every `leases.recovery_interval_s` until `stop()`."""
        while not self._stop.is_set():
            try:
                await self.sweep()
            except Exception:
                log.exception("sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stop.wait(), self.engine.config().leases.recovery_interval_s
                )

    def stop(self) -> None:
        self._stop.set()

    def reset(self) -> None:
        """Allow `run()` again after a `stop()`."""
        self._stop.clear()

    async def requeue_everything(self) -> int:
        """Put all ready work back on the queue (the in-process queue died with its process)."""
        async with self.store.read() as tx:
            work = await tx.tasks.queued_work()
        await self.effects.enqueue([t for t in work if t.status == S.PENDING])
        await self.engine.requeue([t for t in work if t.status == S.DELEGATED])
        return len(work)

    async def sweep(self) -> None:
        await self.take_over_expired_leases()
        await self.queue_due_work()
        await self.fail_overdue()
        await self.report_queue_depth()

    async def take_over_expired_leases(self) -> int:
        async with self.store.read() as tx:
            expired = await tx.tasks.expired_leases(self.clock.now())
        for task in expired:
            await end_lost_attempt(self.engine, task)
        return len(expired)

    async def queue_due_work(self) -> int:
        """Queue delegated work that is not on the queue and whose back-off has ended."""
        async with self.store.read() as tx:
            due = await tx.tasks.unqueued_ready(self.clock.now())
        await self.engine.requeue(due)
        return len(due)

    async def fail_overdue(self) -> int:
        config = self.engine.config()
        now = self.clock.now()
        requests: list[TransitionRequest] = []
        async with self.store.read() as tx:
            for root in await tx.tasks.overdue_roots(now):
                requests.append(
                    TransitionRequest(
                        root.id,
                        S.FAILED,
                        reason="task timeout",
                        updates=_timeout("the task did not finish before its deadline"),
                    )
                )
            cutoff = now - timedelta(seconds=config.timeouts.queue_wait_s)
            for task in await tx.tasks.waiting_since_before(cutoff):
                requests.append(
                    TransitionRequest(
                        task.id,
                        S.FAILED,
                        reason="queue wait timeout",
                        updates={"error": queue_wait_exceeded(config.timeouts.queue_wait_s)},
                    )
                )
            phase_cutoff = now - timedelta(seconds=config.timeouts.phase_s)
            candidates = await tx.tasks.roots_with_work_started_before(phase_cutoff)
            trees = await tx.tasks.load_trees(candidates, for_update=False) if candidates else {}
        phases = phase_ranks(config.phases)
        for root_id, tasks in trees.items():
            if (phase := _overdue_phase(tasks, phases, phase_cutoff)) is not None:
                requests.append(
                    TransitionRequest(
                        root_id,
                        S.FAILED,
                        reason="phase timeout",
                        updates=_timeout(
                            f"the {phase} phase took longer than {config.timeouts.phase_s:g}s"
                        ),
                    )
                )
        for request in requests:
            await self.engine.transition_many([request])
        return len(requests)

    async def report_queue_depth(self) -> None:
        ready = in_flight = 0
        for queue in PRIORITY_QUEUES:
            depth = await self.effects.broker.queue.depth(queue)
            ready += depth.ready
            in_flight += depth.in_flight
        metrics.QUEUE_DEPTH.labels("tasks", "ready").set(ready)
        metrics.QUEUE_DEPTH.labels("tasks", "in_flight").set(in_flight)
        plans = await self.effects.broker.queue.depth(PLAN_QUEUE)
        metrics.QUEUE_DEPTH.labels("plans", "ready").set(plans.ready)
        metrics.QUEUE_DEPTH.labels("plans", "in_flight").set(plans.in_flight)


def _overdue_phase(tasks: list[Task], phases: dict[str, int], cutoff: Any) -> str | None:
    """The phase of a running root that started before `cutoff` and is not finished."""
    root = next((t for t in tasks if t.parent_id is None), None)
    if root is None or root.status not in (S.DELEGATED, S.IN_PROGRESS):
        return None
    children = [t for t in tasks if t.parent_id == root.id]
    by_phase: dict[int, list[Task]] = {}
    for child in children:
        by_phase.setdefault(phase_rank(child, phases), []).append(child)
    for rank in sorted(by_phase):
        group = by_phase[rank]
        if all(c.status == S.COMPLETED for c in group):
            continue
        starts = [c.started_at for c in group if c.started_at is not None]
        if starts and min(starts) < cutoff:
            return str(group[0].phase or "unphased")
        return None
    return None
