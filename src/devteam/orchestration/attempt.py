"""One agent attempt, supervised: timeouts, cancellation, lease loss, and its outcome.

The executor starts an attempt through the rules engine, then runs it here as
an asyncio task. However the attempt ends, what happened becomes one proposed
transition (its outcome), which the executor commits through the engine before
it acknowledges the work item.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from devteam.broker.protocol import QueueMessage
from devteam.domain.agents import Agent, AgentFailed
from devteam.domain.enums import AgentType, TaskStatus
from devteam.domain.errors import ErrorCode
from devteam.domain.tasks import Task, TaskResult, TaskSpec, Usage
from devteam.observability import metrics, tracing
from devteam.observability.logging import get_logger, log_context
from devteam.orchestration.context import (
    ExecutionContext,
    attempt_deadline,
    build_spec,
    dependency_results,
)
from devteam.orchestration.engine import Engine
from devteam.orchestration.queue import WorkItem
from devteam.orchestration.rules.base import TransitionRequest, Tree
from devteam.settings.team_leader import TeamLeaderConfig

log = get_logger(__name__)

S = TaskStatus


class StopReason(StrEnum):
    """Why the executor stopped a running attempt (or an LLM planning)."""

    CANCEL = "cancel"
    """The task was cancelled: it ends `cancelled`."""
    LEASE_LOST = "lease_lost"
    """Another worker took the lease over: this one records nothing."""
    SHUTDOWN = "shutdown"
    """This worker is stopping: the work is handed back, to run again elsewhere."""


@dataclass(slots=True)
class Running:
    """Work this executor holds a lease on and runs now."""

    item: WorkItem
    message: QueueMessage | None
    """The queue item to acknowledge once the outcome is committed; None for work started
    by a transaction of this process (its lease in the database is all there is)."""
    runner: asyncio.Task[Any] | None = None
    stop_reason: StopReason | None = None
    recording: bool = False
    """The attempt is over and its outcome is being committed: nothing may cancel it now."""

    def stop(self, reason: StopReason) -> None:
        if self.recording:
            return
        if self.stop_reason is None:
            self.stop_reason = reason
        if self.runner is not None and not self.runner.done():
            self.runner.cancel()


@dataclass(frozen=True, slots=True)
class AttemptInputs:
    """What an attempt works from, taken from its tree when it starts (the tree goes on
    changing in later transactions; the attempt sees it as it was when it started)."""

    spec: TaskSpec | None
    """None when the task names no agent type."""
    dependencies: dict[str, TaskResult]
    timeout_s: float

    @classmethod
    def of(cls, task: Task, tree: Tree, config: TeamLeaderConfig, now: datetime) -> AttemptInputs:
        return cls(
            spec=build_spec(task, tree, config, now) if task.agent_type is not None else None,
            dependencies=dependency_results(task, tree, config.phases),
            timeout_s=(attempt_deadline(task, tree, config, now) - now).total_seconds(),
        )


async def run_attempt(
    running: Running,
    task: Task,
    inputs: AttemptInputs,
    *,
    engine: Engine,
    agents: Mapping[AgentType, Agent],
) -> TransitionRequest | None:
    """Run the agent of `task`; the transition its end proposes (None: nothing to record,
    the lease was lost)."""
    agent_label = task.agent_type.value if task.agent_type else "none"
    with (
        tracing.continued(running.item.traceparent or task.trace_parent),
        tracing.span(
            f"agent {agent_label}",
            devteam_task_id=str(task.id),
            devteam_root_id=str(task.root_id),
            devteam_agent_type=agent_label,
            devteam_attempt=task.attempt,
        ),
        log_context(task_id=str(task.id), agent=agent_label),
    ):
        agent = agents.get(task.agent_type) if task.agent_type else None
        context = ExecutionContext(engine, task, inputs.dependencies)
        metrics.series(metrics.TASKS_IN_PROGRESS, agent_label).inc()
        timeout = inputs.timeout_s
        try:
            if running.stop_reason is not None:
                raise asyncio.CancelledError
            spec = inputs.spec
            if agent is None or spec is None:
                raise AgentFailed(
                    ErrorCode.AGENT_UNAVAILABLE, f"no agent of type {task.agent_type} is available"
                )
            # The agent runs in this task: a timeout or a cancel unwinds it before we go on.
            async with asyncio.timeout(max(timeout, 0.001)):
                result = await agent.execute(spec, context)
            return completed(task, result, context.usage)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()  # we asked for it; the attempt itself carries on
            if running.stop_reason is StopReason.LEASE_LOST:
                return None
            return stopped(task, running.stop_reason, context.usage)
        except TimeoutError:
            return failed(
                task,
                ErrorCode.TIMEOUT,
                f"the attempt did not finish within {timeout:g}s",
                context.usage,
            )
        except AgentFailed as exc:
            usage = exc.usage if exc.usage != Usage() else context.usage
            outcome = failed(task, exc.error_code, exc.message, usage)
            if exc.budget is not None:
                outcome.event_data["budget"] = exc.budget
            return outcome
        except Exception as exc:
            log.exception("agent failed")
            return failed(
                task, ErrorCode.AGENT_ERROR, f"{type(exc).__name__}: {exc}", context.usage
            )
        finally:
            metrics.series(metrics.TASKS_IN_PROGRESS, agent_label).dec()


def completed(task: Task, result: TaskResult, usage: Usage) -> TransitionRequest:
    return TransitionRequest(
        task.id,
        S.COMPLETED,
        updates={
            "result": result.model_dump(mode="json"),
            "usage_delta": result.usage if result.usage != Usage() else usage,
        },
        expect_attempt=task.attempt,
    )


def failed(task: Task, code: ErrorCode | str, message: str, usage: Usage) -> TransitionRequest:
    return TransitionRequest(
        task.id,
        S.FAILED,
        updates={"error": {"code": str(code), "message": message}, "usage_delta": usage},
        expect_attempt=task.attempt,
    )


def stopped(task: Task, reason: StopReason | None, usage: Usage) -> TransitionRequest:
    if reason is StopReason.CANCEL:
        return TransitionRequest(
            task.id,
            S.CANCELLED,
            reason="cancelled while running",
            updates={
                "error": {"code": ErrorCode.CANCELLED.value, "message": "cancelled"},
                "usage_delta": usage,
            },
            expect_attempt=task.attempt,
        )
    # Shutting down: hand the work back; it runs again elsewhere, at once.
    return failed(task, ErrorCode.WORKER_STOPPED, "the worker stopped before it finished", usage)
