"""Group commit: outcomes arriving together are written in one transaction.

While one transaction is being written, the outcomes that arrive queue up; the
next transaction takes all of them. Alone, an outcome is written at once; under
load, hundreds share one transaction's round trips.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from uuid import UUID

from devteam.observability.logging import get_logger
from devteam.orchestration.engine import Engine, TransitionResult
from devteam.orchestration.rules.base import TransitionRequest

log = get_logger(__name__)


@dataclass
class _Pending:
    request: TransitionRequest
    root_id: UUID
    done: asyncio.Future[TransitionResult] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommitter:
    def __init__(self, engine: Engine, *, max_batch: int = 200) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._waiting: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None

    async def commit(self, request: TransitionRequest, root_id: UUID) -> TransitionResult:
        pending = _Pending(request, root_id)
        self._waiting.append(pending)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="group-commit")
        return await asyncio.shield(pending.done)

    async def _write(self) -> None:
        while self._waiting:
            batch = self._waiting[: self.max_batch]
            del self._waiting[: len(batch)]
            try:
                results = await self.engine.transition_many(
                    [p.request for p in batch], root_ids=[p.root_id for p in batch]
                )
            except Exception as exc:
                if len(batch) == 1:
                    _fail(batch[0], exc)
                    continue
                # One bad outcome must not sink the others: write them one by one.
                log.warning("a group commit failed; writing its outcomes one by one")
                for pending in batch:
                    try:
                        (result,) = await self.engine.transition_many(
                            [pending.request], root_ids=[pending.root_id]
                        )
                    except Exception as exc:
                        _fail(pending, exc)
                    else:
                        pending.done.set_result(result)
                continue
            for pending, result in zip(batch, results, strict=True):
                pending.done.set_result(result)


def _fail(pending: _Pending, error: Exception) -> None:
    if not pending.done.done():
        pending.done.set_exception(error)
